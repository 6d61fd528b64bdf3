import json

import numpy as np
import pytest

from eclip.encoders import embed_cached
from eclip.rundir import atomic_path, write_json


def test_rerun_reuses_embeddings(tmp_path, hash_encoder):
    texts = [f"product {i}" for i in range(50)]
    first, info = embed_cached(hash_encoder, texts, tmp_path, chunk_rows=16)
    assert info["embedded_rows"] == 50 and first.shape == (50, 64)
    rows_before = hash_encoder.rows
    second, info2 = embed_cached(hash_encoder, texts, tmp_path, chunk_rows=16)
    assert hash_encoder.rows == rows_before and info2["embedded_rows"] == 0
    assert np.array_equal(first, second)


def test_resume_after_kill_embeds_only_missing_chunks(tmp_path, hash_encoder):
    texts = [f"product {i}" for i in range(50)]

    class Killed(Exception):
        pass

    class Dies:
        name, dim = hash_encoder.name, hash_encoder.dim
        describe = hash_encoder.describe

        def __init__(self):
            self.n = 0

        def encode(self, chunk):
            self.n += 1
            if self.n == 3:
                raise Killed
            return hash_encoder.encode(chunk)

    with pytest.raises(Killed):
        embed_cached(Dies(), texts, tmp_path, chunk_rows=16)
    assert len(list((tmp_path / "chunks").glob("*.npy"))) == 2
    _, info = embed_cached(hash_encoder, texts, tmp_path, chunk_rows=16)
    assert info["reused_rows"] == 32 and info["embedded_rows"] == 18


def test_changed_model_is_not_mixed(tmp_path, hash_encoder):
    texts = ["a b c", "d e f"]
    embed_cached(hash_encoder, texts, tmp_path)
    other = type(hash_encoder)(dim=32)
    emb, info = embed_cached(other, texts, tmp_path)
    assert emb.shape == (2, 32) and info["embedded_rows"] == 2


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
