"""Model specs and loading: parse_model_spec, load_encoder, and the model folders eclip writes.

Everything runs offline on the tiny random-weight open_clip model of ``conftest.TINY_CLIP_CFG``;
MiniLM is parsed but never loaded here (slow).
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLIP_CFG
from PIL import Image

from eclip.encoders import load_encoder, parse_model_spec
from eclip.encoders.clip import CONFIG_FILE, WEIGHTS_FILE, create_model_dir, save_model_dir
from eclip.errors import EclipError, ModelError

TEXTS = ["red shoe", "blue shirt"]
TINY_ARCH = "eclip-tiny-test"


def _unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


def _cli() -> list[str]:
    """The ``eclip`` console script (``python -m eclip.cli`` has no ``__main__``)."""
    script = Path(sys.executable).parent / "eclip"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from eclip.cli import main; main()"]


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory) -> str:
    """Register TINY_CLIP_CFG with open_clip under the name ``eclip-tiny-test``."""
    import open_clip

    folder = tmp_path_factory.mktemp("arch")
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CLIP_CFG), "utf-8")
    open_clip.add_model_config(folder / f"{TINY_ARCH}.json")
    assert TINY_ARCH in open_clip.list_models()
    return TINY_ARCH


@pytest.fixture
def offline_empty_hf_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE on and an empty Hugging Face cache (nothing can be had)."""
    import huggingface_hub.constants as hfc

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    # huggingface_hub reads these at import time; patch the live values as well.
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hfc, "HF_HOME", str(home))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(home / "hub"))
    return home


# --------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("no-such-model", ["unknown model spec", "no-such-model", "Use one of", "openclip:ARCH", "hf-hub:ORG/NAME"]),
        ("", ["empty model spec", "use one of", "minilm"]),
        ("   ", ["empty model spec"]),
        ("openclip:NoSuchArch", ["no architecture 'NoSuchArch'", "open_clip.list_models()"]),
        ("openclip:ViT-B-3", ["no architecture 'ViT-B-3'", "Close names", "ViT-B-32"]),
        (
            "openclip:ViT-B-32:no_such_tag",
            ["no pretrained tag 'no_such_tag'", "Known tags", "laion2b_s34b_b79k", "checkpoint file"],
        ),
        ("openclip:ViT-B-32:/missing/file.pt", ["no checkpoint file /missing/file.pt"]),
        ("hf-hub:bad", ["hf-hub:ORG/NAME"]),
        ("hf-hub:a/b/c", ["hf-hub:ORG/NAME"]),
        ("hf-hub:org/", ["hf-hub:ORG/NAME"]),
        ("local-dir:/no/such/folder", ["no such folder"]),
    ],
)
def test_bad_specs_raise_model_error_saying_what_to_do(spec, needles):
    with pytest.raises(ModelError) as info:
        parse_model_spec(spec)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    # load_encoder goes through the same parser, and ModelError is a user-facing error
    with pytest.raises(ModelError):
        load_encoder(spec)
    assert isinstance(info.value, EclipError)


def test_bare_checkpoint_file_suggests_openclip_arch_path(tiny_clip_dir):
    ckpt = tiny_clip_dir / WEIGHTS_FILE
    with pytest.raises(ModelError) as info:
        load_encoder(str(ckpt))
    msg = str(info.value)
    assert "checkpoint file" in msg
    assert f"openclip:ARCH:{ckpt}" in msg


def test_folder_without_model_files_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("not a model")
    for spec in (str(tmp_path), f"local-dir:{tmp_path}"):
        with pytest.raises(ModelError) as info:
            load_encoder(spec)
        msg = str(info.value)
        assert "open_clip_config.json" in msg and "modules.json" in msg and "--model" in msg


# --------------------------------------------------------------------------- spec parsing


@pytest.mark.parametrize(
    "alias", ["minilm", "MiniLM", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "  minilm "]
)
def test_minilm_aliases_parse_as_text_only(alias):
    spec = parse_model_spec(alias)
    assert spec.kind == "minilm"
    assert spec.has_images is False
    assert spec.needs_network is False


def test_spec_kinds(tiny_clip_dir, tmp_path):
    local = parse_model_spec(str(tiny_clip_dir))
    assert (local.kind, local.location, local.has_images, local.needs_network) == (
        "local-dir",
        str(tiny_clip_dir.resolve()),
        True,
        False,
    )
    assert parse_model_spec(f"local-dir:{tiny_clip_dir}").location == str(tiny_clip_dir.resolve())

    hub = parse_model_spec("hf-hub:some-org/some-model")
    assert (hub.kind, hub.location, hub.needs_network) == ("hf-hub", "some-org/some-model", True)

    tagged = parse_model_spec("openclip:RN50:openai")
    assert (tagged.kind, tagged.arch, tagged.pretrained, tagged.needs_network) == ("openclip", "RN50", "openai", True)

    bare = parse_model_spec("openclip:RN50")
    assert (bare.arch, bare.pretrained, bare.needs_network) == ("RN50", None, False)

    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    filed = parse_model_spec(f"openclip:RN50:{ckpt}")
    assert (filed.pretrained, filed.needs_network) == (str(ckpt.resolve()), False)

    st = tmp_path / "st"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    sent = parse_model_spec(str(st))
    assert (sent.kind, sent.has_images) == ("sentence", False)


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("spec", ["hf-hub:some-org/some-model", "openclip:RN50:openai"])
def test_weights_offline_say_how_to_get_them(offline_empty_hf_cache, spec):
    with pytest.raises(ModelError) as info:
        load_encoder(spec, device="cpu")
    msg = str(info.value)
    assert "HF_HUB_OFFLINE" in msg
    assert "local checkpoint" in msg and "openclip:ARCH:/path/ckpt.pt" in msg
    assert not any(offline_empty_hf_cache.rglob("*.safetensors"))


# --------------------------------------------------------------------------- loading


def test_load_tiny_folder_by_path_and_local_dir(tiny_clip_dir):
    a = load_encoder(str(tiny_clip_dir), device="cpu")
    b = load_encoder(f"local-dir:{tiny_clip_dir}", device="cpu")
    for enc in (a, b):
        assert enc.dim == 32
        assert enc.has_images is True
        out = enc.encode(TEXTS)
        assert out.shape == (2, 32) and out.dtype == np.float32
        assert _unit_rows(out)
        assert not np.allclose(out[0], out[1])
    assert np.array_equal(a.encode(TEXTS), b.encode(TEXTS))
    assert a.encode([]).shape == (0, 32)
    assert a.describe()["dim"] == 32 and a.describe()["kind"] == "open_clip"


def test_encode_images_from_image_transform(tiny_clip_dir):
    import torch

    enc = load_encoder(str(tiny_clip_dir), device="cpu")
    red = Image.new("RGB", (48, 40), (220, 20, 20))
    checker = Image.fromarray((np.indices((40, 40)).sum(axis=0) % 2 * 255).astype(np.uint8)).convert("RGB")
    pixels = torch.stack([enc.image_transform(red), enc.image_transform(checker)])
    assert tuple(pixels.shape) == (2, 3, 32, 32)
    out = enc.encode_images(pixels)
    assert out.shape == (2, 32) and out.dtype == np.float32
    assert _unit_rows(out)
    assert not np.allclose(out[0], out[1])
    assert enc.encode_images(pixels[:0]).shape == (0, 32)


def test_two_loads_are_identical_and_seeds_differ(tiny_clip_dir, tmp_path):
    a = load_encoder(str(tiny_clip_dir), device="cpu")
    b = load_encoder(str(tiny_clip_dir), device="cpu")
    assert np.array_equal(a.encode(TEXTS), b.encode(TEXTS))
    assert a.describe() == b.describe()

    other = create_model_dir(TINY_CLIP_CFG, tmp_path / "seed1", seed=1)
    c = load_encoder(str(other), device="cpu")
    assert c.describe() != a.describe()
    assert c.describe()["weights"] != a.describe()["weights"]
    assert not np.allclose(c.encode(TEXTS), a.encode(TEXTS))


def test_create_model_dir_writes_config_and_weights_and_replaces(tmp_path):
    folder = create_model_dir(TINY_CLIP_CFG, tmp_path / "m", seed=0)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["model_cfg"] == TINY_CLIP_CFG
    first = (folder / WEIGHTS_FILE).read_bytes()
    # same seed -> same bytes; a rewrite replaces the folder and leaves no temporary folders
    create_model_dir(TINY_CLIP_CFG, tmp_path / "m", seed=0)
    assert (folder / WEIGHTS_FILE).read_bytes() == first
    create_model_dir(TINY_CLIP_CFG, tmp_path / "m", seed=3)
    assert (folder / WEIGHTS_FILE).read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_create_model_dir_bad_config_is_model_error(tmp_path):
    with pytest.raises(ModelError) as info:
        create_model_dir({"embed_dim": 32, "vision_cfg": {"no_such_option": 1}, "text_cfg": {}}, tmp_path / "bad")
    assert "cannot build an open_clip model" in str(info.value)
    assert not (tmp_path / "bad").exists()


def test_save_model_dir_round_trips(tmp_path, tiny_clip_dir):
    import open_clip
    import torch

    torch.manual_seed(5)
    model = open_clip.CLIP(**copy.deepcopy(TINY_CLIP_CFG)).eval()
    folder = save_model_dir(
        model, TINY_CLIP_CFG, tmp_path / "saved", preprocess_cfg={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    )
    enc = load_encoder(str(folder), device="cpu")
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=TINY_CLIP_CFG["text_cfg"]["context_length"])
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(tok(TEXTS)), dim=-1).numpy()
    assert np.allclose(enc.encode(TEXTS), want, atol=1e-5)
    # the preprocess_cfg is honoured by the loaded image transform
    norm = enc.image_transform.transforms[-1]
    assert tuple(norm.mean) == (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------- checkpoint files


def test_openclip_arch_with_pt_checkpoint_loads(tmp_path, tiny_arch):
    import open_clip
    import torch

    torch.manual_seed(7)
    model = open_clip.CLIP(**copy.deepcopy(TINY_CLIP_CFG)).eval()
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)

    enc = load_encoder(f"openclip:{tiny_arch}:{ckpt}", device="cpu")
    assert enc.dim == 32
    tok = open_clip.get_tokenizer(tiny_arch)
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(tok(TEXTS)), dim=-1).numpy()
    got = enc.encode(TEXTS)
    assert np.allclose(got, want, atol=1e-5)
    d = enc.describe()
    assert d["arch"] == tiny_arch
    assert d["weights"] not in ("random-init", str(ckpt))  # a digest of the file

    # the same architecture with random weights gives other vectors
    rand = load_encoder(f"openclip:{tiny_arch}", device="cpu")
    assert rand.describe()["weights"] == "random-init"
    assert not np.allclose(rand.encode(TEXTS), got)


def test_checkpoint_with_other_embed_dim_does_not_fit_registered_arch(tmp_path, tiny_arch):
    cfg16 = copy.deepcopy(TINY_CLIP_CFG)
    cfg16["embed_dim"] = 16
    folder16 = create_model_dir(cfg16, tmp_path / "t16")
    with pytest.raises(ModelError) as info:
        load_encoder(f"openclip:{tiny_arch}:{folder16 / WEIGHTS_FILE}", device="cpu")
    msg = str(info.value)
    assert "does not fit the architecture" in msg
    assert "Pass the architecture the checkpoint was trained with" in msg


def test_folder_whose_weights_do_not_fit_its_config(tmp_path):
    cfg16 = copy.deepcopy(TINY_CLIP_CFG)
    cfg16["embed_dim"] = 16
    folder16 = create_model_dir(cfg16, tmp_path / "t16", seed=0)
    folder32 = create_model_dir(TINY_CLIP_CFG, tmp_path / "t32", seed=0)
    assert load_encoder(str(folder16), device="cpu").dim == 16
    shutil.copy(folder16 / WEIGHTS_FILE, folder32 / WEIGHTS_FILE)
    with pytest.raises(ModelError) as info:
        load_encoder(str(folder32), device="cpu")
    msg = str(info.value)
    assert "does not fit the architecture" in msg
    assert "text_projection" in msg


def test_tiny_checkpoint_as_vit_b_32_says_it_does_not_fit(tiny_clip_dir):
    with pytest.raises(ModelError, match="does not fit the architecture"):
        load_encoder(f"openclip:ViT-B-32:{tiny_clip_dir / WEIGHTS_FILE}", device="cpu")


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_unknown_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-model")
    (folder / "catalog.csv").write_text("id,title\n1,red shoe\n2,blue shirt\n", "utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [*_cli(), "embed", str(folder / "catalog.csv"), "--model", "no-such-model", "--out", str(folder / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_unknown_model_exits_2_with_error_and_no_traceback(cli_unknown_model):
    r = cli_unknown_model
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert r.stderr.startswith("error: ")
    assert "no-such-model" in r.stderr
    assert "Use one of" in " ".join(r.stderr.split())


def test_cli_error_is_one_line(cli_unknown_model):
    lines = cli_unknown_model.stderr.strip().splitlines()
    assert len(lines) == 1, lines
