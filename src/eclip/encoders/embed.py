"""The resumable, sharded, multimodal embedding job behind ``eclip embed``.

Layout of an embeddings directory::

    DIR/manifest.json            model, settings, counts, status ("running" / "complete")
    DIR/failures.parquet         id, path, reason: images that could not be used
    DIR/shards/00000/            rows [0, shard_rows), written by one rank:
        ids.parquet              id (catalog order)
        text.npy                 (m, d) float32, L2-normalised title embeddings
        image.npy                (m, d) float32, L2-normalised image embeddings (image models)
        fused.npy                (m, d) float32, L2-normalised fused embeddings
        phash.npy                (m, 8) uint8 packed 64-bit pHash (with an image column)
        has_text.npy, has_image.npy   (m,) bool
        failures.parquet, shard.json  (shard.json holds the shard's content key)

**Fusion.** ``fused = normalize(w * image + (1 - w) * text)`` with ``w = image_weight``
(default 0.5, i.e. the mean of the two unit vectors, as in CLIP-style late fusion); a row
without a usable image gets its text embedding, a row without text its image embedding, and a
row with neither a zero vector (``has_text`` and ``has_image`` both false).

**Resuming.** A shard is written into a temporary folder and renamed into place, so it is
either complete or absent; one holding an image failure that may pass (a timeout, HTTP 429 or
5xx) counts as unfinished, so a rerun tries those images again. A shard's key digests the
model, the settings and the shard's ids, texts and image references; a rerun skips every shard whose key matches and embeds the rest.
A killed run, rerun with the same command, therefore redoes only the unfinished shard.

**Distributed.** Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) shard ``i`` belongs
to rank ``i % N``; each rank writes its own shards, ranks meet at a gloo barrier, and rank 0
writes the manifest. :func:`eclip.encoders.store.load_embeddings` reads all shards as one.

**Decoding.** Image reading, pHash and preprocessing run in a ``torch.utils.data.DataLoader``
with ``workers`` processes, so the model never waits on PIL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from eclip.catalog import Catalog
from eclip.catalog.images import RETRYABLE, ImageFailure, ImageSettings, open_image
from eclip.encoders.base import Encoder
from eclip.encoders.phash import PHASH_BYTES, phash_bytes
from eclip.encoders.store import FAILURE_SCHEMA, FAILURES, SHARDS, read_failures
from eclip.errors import RunDirError
from eclip.progress import console, progress_bar
from eclip.rundir import (
    MANIFEST,
    fault_point,
    fingerprint,
    read_json,
    texts_digest,
    umask_mode,
    write_json,
    write_parquet,
)


def default_workers() -> int:
    """DataLoader workers: one per core beyond the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


@dataclass
class EmbedSettings:
    """Settings of the embedding job; all but ``batch_size``/``workers`` enter the shard keys.

    Attributes:
        shard_rows: rows per shard (the unit of resuming and of work per rank).
        image_weight: ``w`` in ``fused = normalize(w * image + (1 - w) * text)``.
        phash: compute the pHash of every image.
        batch_size: rows per forward pass.
        workers: DataLoader worker processes for image decoding (0: in the main process).
    """

    shard_rows: int = 4096
    image_weight: float = 0.5
    phash: bool = True
    batch_size: int = 64
    workers: int = -1

    def keyed(self) -> dict[str, Any]:
        return {"shard_rows": self.shard_rows, "image_weight": self.image_weight, "phash": self.phash}


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 otherwise)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def device(self, asked: str | None = None) -> str | None:
        """The torch device of this rank (``embed`` and ``train`` both ask here).

        Under ``torchrun``, ``None`` or plain ``cuda`` becomes the GPU of this node named by
        ``LOCAL_RANK`` (``cuda:LOCAL_RANK``: the global rank names the wrong GPU on the second
        node), or ``cpu`` without CUDA; any other ``asked`` (``cpu``, ``cuda:3``) is kept. In a
        single process ``asked`` is returned as it is (``None``: the loader's choice)."""
        if self.world == 1 or (asked is not None and asked != "cuda"):
            return asked
        import torch

        return f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank))}" if torch.cuda.is_available() else (asked or "cpu")

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


class _ImageRows:
    """Dataset: row position -> (row, pixels or None, pHash or None, failure or None)."""

    def __init__(
        self, refs: list[str | None], settings: ImageSettings, transform: Callable | None, want_phash: bool
    ) -> None:
        self.refs, self.settings, self.transform, self.want_phash = refs, settings, transform, want_phash

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple:
        try:
            img = open_image(self.refs[i], self.settings)
            pixels = self.transform(img) if self.transform is not None else None
            code = phash_bytes(img) if self.want_phash else None
        except ImageFailure as exc:
            return i, None, None, (exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - a decoder crash on one image must not stop the run
            return i, None, None, ("corrupt", f"{self.refs[i]}: {type(exc).__name__}: {exc}")
        return i, pixels, code, None


def _collate(items: list[tuple]) -> list[tuple]:
    return items


def _shard_key(run_key: str, cat: Catalog, lo: int, hi: int) -> str:
    refs = [r or "" for r in cat.images[lo:hi]] if cat.images is not None else []
    return fingerprint(run_key, texts_digest(cat.ids[lo:hi]), texts_digest(cat.texts[lo:hi]), texts_digest(refs))


def _shard_done(folder: Path, key: str) -> bool:
    """Whether the shard is written with this content key and holds no image failure that
    may pass on its own (a timeout, HTTP 429 / 5xx: :data:`eclip.catalog.images.RETRYABLE`),
    which a rerun tries again."""
    meta = read_json(folder / "shard.json")
    return meta.get("key") == key and not meta.get("retryable_failures", 0)


def run_key(encoder: Encoder, cat: Catalog, settings: EmbedSettings) -> str:
    """Digest of what makes embeddings comparable: model, keyed settings, text and image columns."""
    return fingerprint(encoder.describe(), settings.keyed(), list(cat.text_cols), cat.image_col)


class _ShardWriter:
    """Collects one shard's batches and writes the shard atomically when it is full."""

    def __init__(
        self,
        out: Path,
        index: int,
        lo: int,
        hi: int,
        key: str,
        dim: int,
        with_image: bool,
        with_phash: bool,
        start: int | None = None,
    ) -> None:
        m = hi - lo
        self.out, self.index, self.lo, self.hi, self.key = out, index, lo, hi, key
        self.start = lo if start is None else start  # the shard's first catalog row
        self.text = np.zeros((m, dim), np.float32)
        self.image = np.zeros((m, dim), np.float32) if with_image else None
        self.phash = np.zeros((m, PHASH_BYTES), np.uint8) if with_phash else None
        self.has_image = np.zeros(m, bool)
        self.failures: list[dict] = []
        self.filled = 0

    def write(self, cat: Catalog, image_weight: float, rank: int) -> None:
        has_text = np.array([bool(t) for t in cat.texts[self.lo : self.hi]])
        fused = self.text * has_text[:, None]
        if self.image is not None:
            both = has_text & self.has_image
            fused = np.where(both[:, None], image_weight * self.image + (1 - image_weight) * self.text, fused)
            fused = np.where((self.has_image & ~has_text)[:, None], self.image, fused)
        norms = np.linalg.norm(fused, axis=1, keepdims=True)
        fused = (fused / np.where(norms > 0, norms, 1)).astype(np.float32)
        final = self.out / SHARDS / f"{self.index:05d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.index:05d}.", dir=final.parent))
        try:
            pl.DataFrame({"id": cat.ids[self.lo : self.hi]}, schema={"id": pl.String}).write_parquet(
                tmp / "ids.parquet"
            )
            arrays = {"text": self.text, "fused": fused, "has_text": has_text, "has_image": self.has_image}
            if self.image is not None:
                arrays["image"] = self.image
            if self.phash is not None:
                arrays["phash"] = self.phash
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            pl.DataFrame(self.failures, schema=FAILURE_SCHEMA).write_parquet(tmp / FAILURES)
            retryable = sum(f["reason"] in RETRYABLE for f in self.failures)
            write_json(
                {
                    "key": self.key,
                    "index": self.index,
                    "start": self.start,
                    "rows": self.hi - self.lo,
                    "rank": rank,
                    "retryable_failures": retryable,
                },
                tmp / "shard.json",
            )
            if final.exists():
                shutil.rmtree(final)
            umask_mode(tmp)
            os.replace(tmp, final)
            fault_point(f"embed-shard-{self.index}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def embed_catalog(
    encoder: Encoder,
    cat: Catalog,
    out: str | Path,
    settings: EmbedSettings | None = None,
    images: ImageSettings | None = None,
    overwrite: bool = False,
    dist: Dist | None = None,
    runner: Callable[[list[int], dict[int, str]], int] | None = None,
    executor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed every row of ``cat`` (titles, and images when the catalog has an image column).

    Args:
        encoder: from :func:`eclip.encoders.load_encoder`. A text-only encoder with an image
            column still computes the pHash of every image.
        cat: the catalog; ``cat.images`` holds the image references, if any.
        out: the embeddings directory (layout in the module docstring).
        images: where images are read from (required when ``cat.images`` is set).
        overwrite: replace embeddings of another model or settings instead of refusing.
        dist: rank and world size; default from the ``torchrun`` environment.
        runner: embeds the unfinished shards elsewhere instead of in this process:
            ``runner(todo, keys) -> rows embedded``, with ``todo`` the shard numbers and
            ``keys`` their content keys; each shard must be written by :func:`embed_shard`
            (``eclip embed --ray`` runs them on a Ray actor pool).
        executor: what ran the shards, for the manifest (e.g. the Ray cluster).

    Returns:
        The manifest (rank 0 writes it; other ranks return it unwritten).

    Raises:
        RunDirError: ``out`` holds embeddings of another model or settings (and not
            ``overwrite``).
    """
    settings = settings or EmbedSettings()
    dist = dist or Dist.from_env()
    out = Path(out)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    key = run_key(encoder, cat, settings)
    n = len(cat)
    bounds = shard_bounds(n, settings.shard_rows)
    n_shards = len(bounds)
    with_images = cat.images is not None
    if with_images and images is None:
        images = ImageSettings(root=cat.root, cache_dir=out / "image_cache")
    header = {
        "job": "embed",
        "key": key,
        "model": encoder.describe(),
        "runtime": getattr(encoder, "runtime", "torch"),
        "settings": {**settings.keyed(), "image_col": cat.image_col, "text_cols": list(cat.text_cols)},
        "catalog": str(cat.path.resolve()),
        "dialect": cat.dialect.as_dict() if cat.dialect else None,
        "id_col": cat.id_col,
        "rows": n,
        "dim": encoder.dim,
        "shards": n_shards,
        "arrays": ["text", "fused", "has_text", "has_image"]
        + (["image"] if with_images and encoder.has_images else [])
        + (["phash"] if with_images and settings.phash else []),
    }
    if dist.rank == 0:
        old = read_json(out / MANIFEST)
        if old and old.get("job") == "embed" and old.get("key") != key:
            if not overwrite:
                raise RunDirError(
                    f"{out} holds embeddings from another model or settings ({old.get('model', {}).get('name')}, "
                    f"{old.get('settings')}); use another --out, or pass --overwrite to replace them."
                )
            shutil.rmtree(out / SHARDS, ignore_errors=True)
            (out / SHARDS).mkdir(parents=True)
        for stale in (out / SHARDS).glob("[0-9]*"):
            if stale.is_dir() and int(stale.name) >= n_shards:
                shutil.rmtree(stale)
        write_json({**header, "status": "running"}, out / MANIFEST)
    dist.barrier()

    t0 = time.perf_counter()
    mine = [i for i in range(n_shards) if i % dist.world == dist.rank]
    keys = {i: _shard_key(key, cat, *bounds[i]) for i in mine}
    todo = [i for i in mine if not _shard_done(out / SHARDS / f"{i:05d}", keys[i])]
    reused_rows = sum(bounds[i][1] - bounds[i][0] for i in mine if i not in todo)
    if reused_rows:
        console.print(
            f"[green]rank {dist.rank}: {len(mine) - len(todo)} shard(s) ({reused_rows:,} rows) already done; reusing them.[/]"
        )
    embedded_rows = (
        runner(todo, keys)
        if runner is not None and todo
        else _run_shards(encoder, cat, out, settings, images, todo, keys, dist.rank)
    )
    seconds = time.perf_counter() - t0
    dist.barrier()

    manifest = {
        **header,
        "status": "complete",
        "reused_rows": reused_rows,
        "embedded_rows": embedded_rows,
        "seconds": round(seconds, 3),
    }
    if dist.rank == 0:
        failures = read_failures(out, n_shards)
        write_parquet(failures, out / FAILURES)
        manifest["failures"] = {str(k): int(v) for k, v in failures.group_by("reason").len().iter_rows()}
        manifest["image_rows"] = int(sum(1 for r in cat.images if r)) if cat.images is not None else 0
        manifest["world_size"] = dist.world
        manifest["executor"] = executor or {"kind": "torchrun" if dist.world > 1 else "local"}
        manifest["rows_per_s"] = round(embedded_rows / seconds, 1) if seconds > 0 and embedded_rows else None
        write_json(manifest, out / MANIFEST)
    return manifest


def _run_shards(
    encoder: Encoder,
    cat: Catalog,
    out: Path,
    settings: EmbedSettings,
    images: ImageSettings | None,
    todo: list[int],
    keys: dict[int, str],
    rank: int,
    bounds: dict[int, tuple[int, int]] | None = None,
    offset: int = 0,
) -> int:
    """Embed the shards ``todo``; returns the number of rows embedded. ``bounds``: each
    shard's rows ``[lo, hi)`` in ``cat`` (default: shard ``i`` is rows ``i * shard_rows``
    onwards); ``offset``: the catalog row of ``cat``'s first row (``cat`` is one shard's
    slice on a Ray actor)."""
    bounds = bounds or shard_bounds(len(cat), settings.shard_rows)
    batches: list[list[int]] = []
    batch_shard: list[int] = []
    with_images = cat.images is not None
    # titles alone go to the encoder a shard at a time: it sorts them by length into
    # batch_size batches (little padding); with images, rows follow the image loader's batches
    step = settings.batch_size if with_images else max(settings.shard_rows, settings.batch_size)
    for i in todo:
        lo, hi = bounds[i]
        for b in range(lo, hi, step):
            batches.append(list(range(b, min(hi, b + step))))
            batch_shard.append(i)
    total = sum(bounds[i][1] - bounds[i][0] for i in todo)
    if not total:
        return 0
    with_image_emb = with_images and encoder.has_images
    with_phash = with_images and settings.phash
    loader: Any = None
    if with_images:
        from torch.utils.data import DataLoader, Dataset

        # embed_catalog sets ``images`` whenever the catalog has an image column
        assert cat.images is not None and images is not None
        workers = default_workers() if settings.workers < 0 else settings.workers
        dataset = _ImageRows(cat.images, images, encoder.image_transform if with_image_emb else None, with_phash)
        loader = iter(
            DataLoader(
                cast("Dataset[tuple]", dataset),  # torch's stub wants a Dataset subclass; any map-style object works
                batch_sampler=batches,
                num_workers=workers,
                collate_fn=_collate,
                persistent_workers=False,
                prefetch_factor=4 if workers else None,
            )
        )
    writers: dict[int, _ShardWriter] = {}
    label = f"embedding {total:,} rows" + (" + images" if with_images else "") + f" ({encoder.name})"
    with progress_bar(label, total) as (bar, task):
        for rows, shard in zip(batches, batch_shard):
            lo, hi = bounds[shard]
            w = writers.get(shard)
            if w is None:
                w = writers[shard] = _ShardWriter(
                    out, shard, lo, hi, keys[shard], encoder.dim, with_image_emb, with_phash, offset + lo
                )
            local = np.asarray(rows) - lo
            w.text[local] = encoder.encode([cat.texts[r] for r in rows])
            if loader is not None:
                assert cat.images is not None  # a loader exists only for an image column
                items = next(loader)
                ok_rows, pixels = [], []
                for r, pix, code, failure in items:
                    if failure is not None:
                        reason, detail = failure
                        if reason != "no_image":
                            w.failures.append(
                                {"id": cat.ids[r], "path": cat.images[r], "reason": reason, "detail": detail}
                            )
                        continue
                    w.has_image[r - lo] = True
                    if code is not None:
                        assert w.phash is not None  # codes come only with with_phash
                        w.phash[r - lo] = code
                    if pix is not None:
                        ok_rows.append(r - lo)
                        pixels.append(pix)
                if pixels:
                    import torch

                    assert w.image is not None  # pixels come only with with_image_emb
                    w.image[ok_rows] = encoder.encode_images(torch.stack(pixels))
            w.filled += len(rows)
            if w.filled == hi - lo:
                w.write(cat, settings.image_weight, rank)
                del writers[shard]
            bar.advance(task, len(rows))
    if loader is not None:
        for _ in loader:  # reach StopIteration so the DataLoader shuts its workers down now
            pass
    return total


def shard_bounds(n: int, shard_rows: int) -> dict[int, tuple[int, int]]:
    """Every shard of ``n`` rows: shard number -> its rows ``[first, end)`` (one empty shard
    when ``n`` is 0)."""
    return {i: (i * shard_rows, min(n, (i + 1) * shard_rows)) for i in range(max(1, -(-n // shard_rows)))}


def embed_shard(
    encoder: Encoder,
    part: Catalog,
    out: str | Path,
    settings: EmbedSettings,
    images: ImageSettings | None,
    index: int,
    key: str,
    start: int,
) -> int:
    """Embed one shard given as its own rows, and write it as :func:`embed_catalog` would.

    Args:
        part: the shard's rows only (ids, texts, image references), in catalog order.
        index, key, start: the shard's number, content key (the ``keys`` an
            :func:`embed_catalog` runner is given) and first catalog row.

    Returns:
        Rows embedded: 0 when the shard is already written with this key (a retried item).
    """
    out = Path(out)
    if _shard_done(out / SHARDS / f"{index:05d}", key):
        return 0
    return _run_shards(encoder, part, out, settings, images, [index], {index: key}, 0, {index: (0, len(part))}, start)
