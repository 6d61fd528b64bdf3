import json

import pytest

from eclip.rundir import atomic_path, write_json


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_outputs_keep_the_umask_mode(tmp_path, hash_encoder):
    """Issue 23, row 5: atomic writes do not hand tempfile's 0600 / 0700 on to outputs."""
    import os
    import stat

    import polars as pl

    from eclip.catalog import load_catalog
    from eclip.encoders import EmbedSettings, embed_catalog
    from eclip.rundir import write_json, write_parquet

    old = os.umask(0o022)
    try:
        write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "out" / "x.parquet")
        write_json({"a": 1}, tmp_path / "out" / "m.json")
        pl.DataFrame({"id": ["1", "2"], "title": ["a kettle", "a toaster"]}).write_csv(tmp_path / "c.csv")
        embed_catalog(hash_encoder, load_catalog(tmp_path / "c.csv"), tmp_path / "emb", EmbedSettings(shard_rows=2))
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "out" / "x.parquet") == 0o644 and mode(tmp_path / "out" / "m.json") == 0o644
    assert mode(tmp_path / "emb" / "shards" / "00000") == 0o755
    assert mode(tmp_path / "emb" / "shards" / "00000" / "text.npy") == 0o644
