"""Catalog images: local files, URLs (against a local HTTP server), and image failures in `eclip embed`.

Every bad file is made in the test: a missing path, a truncated JPEG, a text file named .jpg,
paths and symlinks leaving the root, a server that stalls, answers 404 or sends too much.
"""

import io
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from eclip.catalog.images import ImageFailure, ImageSettings, fetch_url, open_image, resolve_local

SLOW_S = 3.0  # how long the stalling handler sleeps before answering
BIG = 5000  # bytes sent by the oversized endpoints


# --------------------------------------------------------------------------- helpers


def _png_bytes(colour=(200, 30, 30), size=(24, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _noise_jpeg(path: Path, seed: int = 0, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, format="JPEG", quality=90)
    return path


def _truncated_jpeg(path: Path) -> Path:
    _noise_jpeg(path, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _settings(root: Path, **kw) -> ImageSettings:
    kw.setdefault("allow_private_urls", True)  # the test server listens on 127.0.0.1
    return ImageSettings(root=root, cache_dir=root.parent / f"{root.name}-cache", **kw)


def _reason(ref, settings) -> str:
    with pytest.raises(ImageFailure) as info:
        open_image(ref, settings)
    assert str(info.value).startswith(f"{info.value.reason}: ")
    return info.value.reason


def _cli() -> list[str]:
    """The ``eclip`` console script (``python -m eclip.cli`` has no ``__main__``)."""
    script = Path(sys.executable).parent / "eclip"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from eclip.cli import main; main()"]


def _run_cli(*args, timeout=180) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([*_cli(), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


# --------------------------------------------------------------------------- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    png = _png_bytes((10, 120, 220))

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes, content_length: bool = True, ctype: str = "image/png") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if content_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server API
        path = self.path.split("?")[0]
        type(self).hits[path] = type(self).hits.get(path, 0) + 1
        try:
            if path.startswith("/good"):
                self._send(self.png)
            elif path.startswith("/slow"):
                time.sleep(SLOW_S)
                self._send(self.png)
            elif path.startswith("/flaky"):  # fails twice, then answers
                if type(self).hits[path] <= 2:
                    self.send_error(503, "busy")
                else:
                    self._send(self.png)
            elif path.startswith("/down"):
                self.send_error(503, "down")
            elif path == "/big-with-length":
                self._send(b"\x89PNG" + b"\0" * BIG)
            elif path == "/big-no-length":
                self._send(b"\x89PNG" + b"\0" * BIG, content_length=False)
            else:
                self.send_error(404, "not here")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


@pytest.fixture(scope="module")
def server():
    _Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.hits
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- local files


def test_good_local_images_open_as_rgb(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (10, 12), 128).save(root / "sub" / "grey.png")
    _noise_jpeg(root / "noise.jpg")
    s = _settings(root)
    grey = open_image("sub/grey.png", s)
    assert grey.mode == "RGB" and grey.size == (10, 12)
    assert open_image("  noise.jpg  ", s).size == (64, 64)  # surrounding blanks are ignored
    assert open_image(str(root / "noise.jpg"), s).size == (64, 64)  # absolute, but inside the root
    assert resolve_local("sub/grey.png", s) == (root / "sub" / "grey.png").resolve()


def test_missing_file(tmp_path):
    s = _settings(tmp_path)
    assert _reason("nope.png", s) == "missing"
    with pytest.raises(ImageFailure) as info:
        resolve_local("nope.png", s)
    assert info.value.reason == "missing" and "nope.png" in str(info.value)


@pytest.mark.parametrize("ref", [None, "", "   "])
def test_empty_reference_is_no_image(tmp_path, ref):
    assert _reason(ref, _settings(tmp_path)) == "no_image"


def test_truncated_jpeg_is_corrupt(tmp_path):
    _truncated_jpeg(tmp_path / "half.jpg")
    assert _reason("half.jpg", _settings(tmp_path)) == "corrupt"


def test_text_file_named_jpg_is_corrupt(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image\n" * 20)
    assert _reason("notes.jpg", _settings(tmp_path)) == "corrupt"
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason("empty.png", _settings(tmp_path)) == "corrupt"


def test_paths_leaving_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png_bytes())
    strict = _settings(root)
    for ref in ("../outside.png", str(outside), "sub/../../outside.png"):
        with pytest.raises(ImageFailure) as info:
            resolve_local(ref, strict)
        assert info.value.reason == "outside_root"
        assert "--allow-outside-root" in str(info.value)
        assert _reason(ref, strict) == "outside_root"
    # even a missing file outside the root is reported as outside_root (checked first)
    assert _reason("../not-there.png", strict) == "outside_root"

    lenient = _settings(root, allow_outside_root=True)
    for ref in ("../outside.png", str(outside)):
        assert resolve_local(ref, lenient) == outside.resolve()
        assert open_image(ref, lenient).size == (24, 24)


def test_symlink_inside_root_pointing_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png_bytes())
    (root / "link.png").symlink_to(outside)
    (root / "inside.png").write_bytes(_png_bytes((1, 2, 3)))
    (root / "ok-link.png").symlink_to(root / "inside.png")
    assert _reason("link.png", _settings(root)) == "outside_root"
    assert open_image("ok-link.png", _settings(root)).getpixel((0, 0)) == (1, 2, 3)
    assert open_image("link.png", _settings(root, allow_outside_root=True)).size == (24, 24)


# --------------------------------------------------------------------------- URLs


def test_url_is_fetched_once_and_cached(tmp_path, server):
    base, hits = server
    s = _settings(tmp_path / "root", timeout_s=5)
    url = f"{base}/good-cached.png"
    first = fetch_url(url, s)
    assert first.is_file() and first.parent == s.cache_dir
    assert first.read_bytes() == _Handler.png
    assert hits["/good-cached.png"] == 1
    img = open_image(url, s)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (10, 120, 220)
    assert fetch_url(url, s) == first
    assert hits["/good-cached.png"] == 1  # served from the cache, the server saw one request
    assert not [p for p in s.cache_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_url_timeout(tmp_path, server):
    base, _ = server
    s = _settings(tmp_path / "root", timeout_s=0.5, retries=0)
    t0 = time.perf_counter()
    with pytest.raises(ImageFailure) as info:
        fetch_url(f"{base}/slow-timeout.png", s)
    elapsed = time.perf_counter() - t0
    assert info.value.reason == "timeout"
    assert elapsed < SLOW_S - 0.5, elapsed  # gave up well before the server answered
    assert not s.cache_dir.exists() or not any(s.cache_dir.iterdir())  # nothing cached


def test_url_404_is_http_error(tmp_path, server):
    base, _ = server
    s = _settings(tmp_path / "root", timeout_s=5)
    with pytest.raises(ImageFailure) as info:
        fetch_url(f"{base}/no-such-image.png", s)
    assert info.value.reason == "http_error" and "404" in str(info.value)
    assert _reason(f"{base}/no-such-image.png", s) == "http_error"


def test_transient_failures_are_retried_with_backoff(tmp_path, server):
    """Issue 22, item 2: a server that fails twice and then answers gives the image; one that
    keeps failing is ``unavailable`` (retryable), not a permanent ``http_error``."""
    base, hits = server
    s = _settings(tmp_path / "root", timeout_s=5, retries=2, backoff_s=0.05)
    assert fetch_url(f"{base}/flaky-1.png", s).read_bytes() == _Handler.png
    assert hits["/flaky-1.png"] == 3
    with pytest.raises(ImageFailure) as info:
        fetch_url(f"{base}/down-1.png", s)
    assert info.value.reason == "unavailable" and "503" in str(info.value) and hits["/down-1.png"] == 3
    with pytest.raises(ImageFailure) as info:  # without retries the flaky server's first answer stands
        fetch_url(f"{base}/flaky-2.png", _settings(tmp_path / "other", timeout_s=5, retries=0))
    assert info.value.reason == "unavailable"


def test_a_shard_with_a_transient_failure_is_redone_by_a_rerun(tmp_path, server, hash_encoder):
    from eclip.catalog import load_catalog
    from eclip.encoders import EmbedSettings, embed_catalog, load_embeddings

    base, hits = server
    pl.DataFrame(
        {
            "id": ["1", "2"],
            "title": ["blue photo", "busy server"],
            "image": [f"{base}/good-shard.png", f"{base}/flaky-shard.png"],
        }
    ).write_csv(tmp_path / "c.csv")
    cat = load_catalog(tmp_path / "c.csv", image_col="image")
    images = ImageSettings(
        root=tmp_path, cache_dir=tmp_path / "cache", timeout_s=5, retries=0, allow_private_urls=True
    )  # the first 503 stands
    first = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=2, workers=0), images)
    assert first["failures"] == {"unavailable": 1} and not load_embeddings(tmp_path / "e").has_image[1]
    second = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=2, workers=0), images)
    assert second["reused_rows"] == 0 and second["failures"] == {"unavailable": 1}  # not finished: redone (503 again)
    third = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=2, workers=0), images)
    assert third["failures"] == {} and load_embeddings(tmp_path / "e").has_image.all()  # the server answers now
    assert hits["/good-shard.png"] == 1  # the good image came from the cache on every rerun
    fourth = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=2, workers=0), images)
    assert fourth["reused_rows"] == 2  # finished for good


def test_local_and_private_urls_are_refused_unless_allowed(tmp_path, server):
    """Issue 23, row 6: a catalog cannot make eclip fetch from loopback, private or
    link-local addresses (nor redirect there) unless --allow-private-urls."""
    base, hits = server
    strict = _settings(tmp_path / "root", timeout_s=2, allow_private_urls=False)
    for url in (
        f"{base}/good-private.png",
        "http://10.1.2.3/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/x.png",
    ):
        with pytest.raises(ImageFailure) as info:
            fetch_url(url, strict)
        assert info.value.reason == "private_url" and "--allow-private-urls" in str(info.value), url
    assert "/good-private.png" not in hits  # refused before any connection
    assert fetch_url(f"{base}/good-private.png", _settings(tmp_path / "root", timeout_s=5)).is_file()


def test_connection_refused_is_unavailable(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert _reason(f"http://127.0.0.1:{port}/x.png", _settings(tmp_path, timeout_s=2, backoff_s=0.01)) == "unavailable"


@pytest.mark.parametrize("path", ["/big-with-length", "/big-no-length"])
def test_url_too_large(tmp_path, server, path):
    base, _ = server
    s = _settings(tmp_path / "root", timeout_s=5, max_bytes=1000)
    with pytest.raises(ImageFailure) as info:
        fetch_url(base + path, s)
    assert info.value.reason == "too_large"
    assert "1,000" in str(info.value)
    assert not s.cache_dir.exists() or not any(s.cache_dir.iterdir())
    # the same body fits a larger limit (and then is not an image: corrupt)
    roomy = _settings(tmp_path / "root", timeout_s=5, max_bytes=BIG + 100)
    assert fetch_url(base + path, roomy).stat().st_size == BIG + 4
    assert _reason(base + path, roomy) == "corrupt"


# --------------------------------------------------------------------------- eclip embed end to end


GOOD = {"g-red": "red.png", "g-check": "check.jpg", "g-grad": "sub/grad.png"}
BAD = {
    "b-missing": "missing",
    "b-trunc": "corrupt",
    "b-text": "corrupt",
    "b-outside": "outside_root",
    "b-slow": "timeout",
}


@pytest.fixture(scope="module")
def image_catalog(tmp_path_factory, server):
    """A catalog folder with good images, bad images and an empty image cell."""
    base, _ = server
    top = tmp_path_factory.mktemp("imgcat")
    cat = top / "catalog"
    (cat / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 40), (220, 20, 20)).save(cat / "red.png")
    Image.fromarray(((np.indices((48, 48)) // 6).sum(axis=0) % 2 * 255).astype(np.uint8)).convert("RGB").save(
        cat / "check.jpg", quality=92
    )
    grad = np.zeros((36, 36, 3), np.uint8)
    grad[..., 2] = np.linspace(0, 255, 36, dtype=np.uint8)[None, :]
    grad[..., 1] = np.linspace(0, 255, 36, dtype=np.uint8)[:, None]
    Image.fromarray(grad).save(cat / "sub" / "grad.png")
    _truncated_jpeg(cat / "half.jpg")
    (cat / "notes.jpg").write_text("not an image at all\n" * 10)
    (top / "outside.png").write_bytes(_png_bytes())
    rows = [
        ("g-red", "red running shoe", "red.png"),
        ("b-missing", "missing photo shoe", "nope.png"),
        ("g-check", "black white checked shirt", "check.jpg"),
        ("b-trunc", "truncated jpeg hat", "half.jpg"),
        ("e-empty", "no image sock", ""),
        ("b-outside", "outside root scarf", "../outside.png"),
        ("g-grad", "gradient blue green bag", "sub/grad.png"),
        ("b-slow", "slow server glove", f"{base}/slow-embed.png"),
        ("g-url", "blue url belt", f"{base}/good-embed.png"),
        ("b-text", "text named jpg coat", "notes.jpg"),
    ]
    pl.DataFrame(rows, schema=["id", "title", "image"], orient="row").write_csv(cat / "catalog.csv")
    return cat / "catalog.csv"


@pytest.fixture(scope="module")
def embed_runs(image_catalog, tiny_clip_dir, tmp_path_factory):
    """Two embedding runs of the catalog.

    workers 0: `eclip embed` in a subprocess (a real run of the command line);
    workers 2: :func:`eclip.api.embed` in this process (DataLoader worker processes decode the
    images), which saves a second interpreter start.
    """
    from eclip import api
    from eclip.encoders import EmbedSettings

    out = tmp_path_factory.mktemp("embed-out")
    d0, d2 = out / "w0", out / "w2"
    r = _run_cli(
        "embed",
        image_catalog,
        "--model",
        tiny_clip_dir,
        "--image-col",
        "image",
        "--out",
        d0,
        "--workers",
        0,
        "--shard-rows",
        4,
        "--url-timeout",
        0.5,
        "--device",
        "cpu",
        "--allow-private-urls",
    )
    cfg = api.EmbedConfig(
        model=str(tiny_clip_dir),
        image_col="image",
        device="cpu",
        url_timeout_s=0.5,
        allow_private_urls=True,
        settings=EmbedSettings(shard_rows=4, workers=2),
    )
    manifest2 = api.embed(image_catalog, d2, cfg)
    return {0: (r, d0), 2: (manifest2, d2)}


@pytest.mark.slow  # an embed subprocess plus one with 2 decoding workers, about 35 s: run by .ci/run after the main suite
def test_embed_cli_records_image_failures_and_falls_back_to_text(embed_runs, image_catalog):
    from eclip.encoders import load_embeddings

    r, out = embed_runs[0]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["rows"] == 10 and manifest["shards"] == 3
    assert manifest["failures"] == {"missing": 1, "corrupt": 2, "outside_root": 1, "timeout": 1}
    assert manifest["image_rows"] == 9  # the empty cell is not an image row
    assert "image" in manifest["arrays"] and "phash" in manifest["arrays"]

    failures = pl.read_parquet(out / "failures.parquet")
    assert failures.columns == ["id", "path", "reason", "detail"]
    assert dict(zip(failures["id"], failures["reason"])) == BAD  # one row per bad image, the empty cell absent
    assert failures.height == len(BAD)
    assert failures.filter(pl.col("id") == "b-outside")["path"].to_list() == ["../outside.png"]

    emb = load_embeddings(out)
    ids = pl.read_csv(image_catalog, infer_schema=False)["id"].to_list()
    assert emb.ids == ids
    has_image = dict(zip(emb.ids, emb.has_image.tolist()))
    assert {i for i, v in has_image.items() if v} == {*GOOD, "g-url"}
    assert emb.has_text.all()
    assert emb.image is not None and emb.phash is not None
    for i, rid in enumerate(emb.ids):
        assert np.isclose(np.linalg.norm(emb.fused[i]), 1.0, atol=1e-5)
        assert np.isclose(np.linalg.norm(emb.text[i]), 1.0, atol=1e-5)
        if has_image[rid]:
            assert np.isclose(np.linalg.norm(emb.image[i]), 1.0, atol=1e-5)
            want = emb.image[i] + emb.text[i]
            assert np.allclose(emb.fused[i], want / np.linalg.norm(want), atol=1e-5)
            assert not np.allclose(emb.fused[i], emb.text[i], atol=1e-3)
            assert emb.phash[i].any()
        else:  # no usable image: the fused vector is the text vector
            assert np.allclose(emb.fused[i], emb.text[i], atol=1e-6)
            assert not emb.image[i].any()
            assert not emb.phash[i].any()
    # different good images give different image vectors
    good_rows = [emb.ids.index(g) for g in (*GOOD, "g-url")]
    sims = emb.image[good_rows] @ emb.image[good_rows].T
    assert (sims[~np.eye(len(good_rows), dtype=bool)] < 0.9999).all()


@pytest.mark.slow  # shares those two embedding runs: run by .ci/run after the main suite
def test_embed_with_workers_matches_in_process_decoding(embed_runs):
    from eclip.encoders import load_embeddings

    (r0, d0), (m2, d2) = embed_runs[0], embed_runs[2]
    assert r0.returncode == 0, r0.stderr[-3000:]
    assert m2["status"] == "complete"
    assert m2["failures"] == {"missing": 1, "corrupt": 2, "outside_root": 1, "timeout": 1}
    a, b = load_embeddings(d0), load_embeddings(d2)
    assert a.ids == b.ids
    assert a.key == b.key  # workers do not enter the key
    for name in ("text", "image", "fused"):
        assert np.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    assert np.array_equal(a.phash, b.phash)
    assert np.array_equal(a.has_image, b.has_image)
    fa = pl.read_parquet(d0 / "failures.parquet").select("id", "reason")
    fb = pl.read_parquet(d2 / "failures.parquet").select("id", "reason")
    assert fa.equals(fb)


def test_embed_cli_unknown_image_column(image_catalog, tiny_clip_dir, tmp_path, monkeypatch, capsys):
    """The command line's own entry point (in-process): exit 2, one error naming the column."""
    from eclip.cli import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "eclip",
            "embed",
            str(image_catalog),
            "--model",
            str(tiny_clip_dir),
            "--image-col",
            "nosuchcol",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert "nosuchcol" in err and "--image-col" in err
    assert not (tmp_path / "o" / "manifest.json").exists()
