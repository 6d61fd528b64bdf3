import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("ECLIP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED} (set ECLIP_SHARED_DATA)")
    return SHARED


#: A tiny open_clip architecture (32-d, one layer per tower): fast on CPU, built in-test.
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A model folder (open_clip_config.json + safetensors) with random weights, as eclip writes."""
    from eclip.encoders.clip import create_model_dir

    return create_model_dir(TINY_CLIP_CFG, tmp_path_factory.mktemp("models") / "tiny-clip", seed=0)


class HashEncoder:
    """A tiny deterministic encoder: hashed character trigrams, L2-normalised (no weights)."""

    name = "hash-trigrams"
    has_images = False
    image_transform = None

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0
        self.rows = 0

    def encode(self, texts):
        self.calls += 1
        self.rows += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            t = f"  {t.lower()} "
            for j in range(len(t) - 2):
                out[i, hash(t[j : j + 3]) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def describe(self):
        return {"kind": "test", "name": self.name, "dim": self.dim}


@pytest.fixture
def hash_encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture(scope="session")
def fashion_subset(tmp_path_factory) -> Path:
    """400 fashion rows of the 6 largest article types (image paths relative to the shared
    fashion folder: pass it as --image-root), plus a row whose title is an HTML-injection attempt."""
    import polars as pl

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    cat = pl.read_csv(SHARED / "fashion" / "catalog.csv", infer_schema=False)
    top = cat.group_by("articleType").len().sort("len", descending=True).head(6)["articleType"]
    sub = cat.filter(pl.col("articleType").is_in(top.to_list())).sample(n=400, seed=0, shuffle=True)
    folder = tmp_path_factory.mktemp("fashion")
    sub = pl.concat(
        [
            sub,
            pl.DataFrame(
                {
                    "id": ["x-script"],
                    "title": ['<script>alert(1)</script> "><img src=x onerror=alert(2)>'],
                    "articleType": ["Tshirts"],
                }
            ),
        ],
        how="diagonal",
    )
    sub.write_csv(folder / "catalog.csv")
    return folder


@pytest.fixture(scope="session")
def tiny_sentence_dir(tmp_path_factory) -> Path:
    """A sentence-transformers folder: a 2-layer, 32-d BERT with random weights and the bundled
    MiniLM's tokenizer, then mean pooling and Normalize (MiniLM's layout, in miniature)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from eclip.encoders.spec import bundled_minilm_path

    root = tmp_path_factory.mktemp("models")
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    bert.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    word = models.Transformer(str(root / "bert"), max_seq_length=64)
    st = SentenceTransformer(modules=[word, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
    st.save(str(root / "tiny-st"))
    return root / "tiny-st"


def abt_head(tmp_path_factory, rows: int, name: str) -> Path:
    """The first ``rows`` rows of Abt-Buy's catalog as ``catalog.csv`` in a fresh temporary
    folder (skips the test without the shared data)."""
    import polars as pl

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    folder = tmp_path_factory.mktemp(name)
    pl.read_csv(SHARED / "abt_buy" / "catalog.csv", infer_schema=False).head(rows).write_csv(folder / "catalog.csv")
    return folder / "catalog.csv"


def run_main(*args) -> tuple[int, str]:
    """Run like the console script (an EclipError is one line and exit status 2):
    ``(exit status, what was printed, whitespace-collapsed)``."""
    from eclip.cli.app import main
    from eclip.progress import console

    argv, sys.argv = sys.argv, ["eclip", *map(str, args)]
    code = 0
    with console.capture() as cap:
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        finally:
            sys.argv = argv
    return code, " ".join(cap.get().replace("│", " ").split())
