"""Benchmark HDBSCAN's kNN-graph mode against its raw-vector (PCA) mode, in one run.

Vectors: n embedding-like 384-d vectors, clouds of about ``--per-title`` (50) perturbed
copies around n/50 real MiniLM title embeddings (``bench/_vectors.py``); the title a vector
came from is its gold cluster. For each n and mode a fresh subprocess makes the vectors and
clusters them, so its peak resident memory (``ru_maxrss``) is its own:

* ``pca``: eclip's raw-vector mode, PCA to 32 dimensions then ``hdbscan`` (Boruvka KD-tree);
* ``knn``: eclip's index (autotuned: Flat below 200k rows, IVF-PQ above) finds 15 neighbours
  per row, then ``hdbscan`` runs on the sparse distance graph (``metric="precomputed"``).
  Its time includes building the index and the self-kNN search.

It prints wall time and peak memory per mode, their ratios (pca / knn), ARI of each mode
against the gold titles, and ARI agreement between the two modes where both finish. A mode
that exceeds ``--timeout`` seconds is reported as such and not run at larger n.

    uv run --frozen --extra cpu python bench/cluster.py [--sizes 5000,20000,50000,200000,1000000] [--timeout 900] [--modes knn,pca]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from _vectors import base_vectors, expand  # noqa: E402

console = Console(width=170)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path(__file__).resolve().parents[1] / "runs" / "bench_cache"


def vectors(n: int, per_title: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    base = base_vectors(DATA, CACHE)
    titles = base[np.random.default_rng(seed).permutation(len(base))[: max(1, min(len(base), n // per_title))]]
    src = np.empty(n, dtype=np.int64)
    return expand(titles, n, seed=seed, sources=src), src


def worker(mode: str, n: int, per_title: int, min_cluster_size: int, out: Path) -> None:
    """Cluster n vectors in one mode; write labels and figures to ``out``."""
    from eclip.cluster import HdbscanSettings, cluster_knn, cluster_pca
    from eclip.index import build_index_dir, knn_self_join, open_index_dir

    x, _ = vectors(n, per_title)
    settings = HdbscanSettings(min_cluster_size=min_cluster_size, mode=mode)
    t0 = time.perf_counter()
    if mode == "pca":
        res = cluster_pca(x, settings)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            build_index_dir(x, [str(i) for i in range(n)], Path(tmp) / "idx", k=settings.neighbours)
            scores, nn = knn_self_join(open_index_dir(Path(tmp) / "idx"), x, settings.neighbours)
        t_knn = time.perf_counter() - t0
        res = cluster_knn(scores, nn, settings)
    wall = time.perf_counter() - t0
    np.save(out / f"{mode}-{n}.npy", res.labels)
    figures = {
        "wall_s": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "clusters": int(res.labels.max() + 1),
        "noise": float((res.labels < 0).mean()),
    }
    if mode == "knn":
        figures["knn_s"] = t_knn
    (out / f"{mode}-{n}.json").write_text(json.dumps(figures))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,20000,50000,200000,1000000")
    ap.add_argument("--per-title", type=int, default=50, help="vectors per gold title cloud")
    ap.add_argument("--min-cluster-size", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one mode may take at one n")
    ap.add_argument("--modes", default="knn,pca", help="modes to run (a mode left out is reported as skipped)")
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.per_title, args.min_cluster_size, args.dir)
        return
    from sklearn.metrics import adjusted_rand_score

    sizes = [int(s) for s in args.sizes.split(",")]
    table = Table(
        title=f"HDBSCAN (min_cluster_size {args.min_cluster_size}): kNN-graph mode vs raw-vector (PCA-32) mode, 384-d vectors, ~{args.per_title} per gold title"
    )
    for col in (
        "n",
        "mode",
        "wall s",
        "of which kNN s",
        "peak MiB",
        "time pca/knn",
        "memory pca/knn",
        "clusters",
        "noise",
        "ARI vs gold",
        "ARI pca vs knn",
    ):
        table.add_column(col, justify="right")
    gave_up: set[str] = {"knn", "pca"} - set(args.modes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for n in sizes:
            _, gold = vectors(n, args.per_title)
            got: dict[str, dict] = {}
            for mode in ("knn", "pca"):
                if mode in gave_up:
                    got[mode] = {"skipped": True}
                    continue
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    str(n),
                    "--dir",
                    str(out),
                    "--per-title",
                    str(args.per_title),
                    "--min-cluster-size",
                    str(args.min_cluster_size),
                ]
                console.print(f"n={n:,} {mode} ...")
                try:
                    subprocess.run(cmd, check=True, timeout=args.timeout, stdout=subprocess.DEVNULL)
                    got[mode] = json.loads((out / f"{mode}-{n}.json").read_text())
                    got[mode]["ari"] = adjusted_rand_score(gold, np.load(out / f"{mode}-{n}.npy"))
                except subprocess.TimeoutExpired:
                    got[mode] = {"timeout": True}
                    gave_up.add(mode)
                except subprocess.CalledProcessError as exc:
                    got[mode] = {"failed": exc.returncode}
                    gave_up.add(mode)
            both = all("wall_s" in got[m] for m in ("knn", "pca"))
            agree = adjusted_rand_score(np.load(out / f"pca-{n}.npy"), np.load(out / f"knn-{n}.npy")) if both else None
            for mode in ("knn", "pca"):
                f = got[mode]
                if "wall_s" not in f:
                    why = (
                        f"> {args.timeout:.0f} s (timeout)"
                        if f.get("timeout")
                        else (
                            "skipped (not in --modes, or timed out at a smaller n)"
                            if f.get("skipped")
                            else f"failed (exit {f.get('failed')})"
                        )
                    )
                    table.add_row(f"{n:,}", mode, why, *[""] * 8)
                    continue
                ratio_t = f"{got['pca']['wall_s'] / got['knn']['wall_s']:.2f}x" if both and mode == "pca" else ""
                ratio_m = f"{got['pca']['peak_mib'] / got['knn']['peak_mib']:.2f}x" if both and mode == "pca" else ""
                table.add_row(
                    f"{n:,}",
                    mode,
                    f"{f['wall_s']:.1f}",
                    f"{f['knn_s']:.1f}" if "knn_s" in f else "",
                    f"{f['peak_mib']:,.0f}",
                    ratio_t,
                    ratio_m,
                    f"{f['clusters']:,}",
                    f"{f['noise']:.3f}",
                    f"{f['ari']:.4f}",
                    f"{agree:.4f}" if agree is not None and mode == "pca" else "",
                )
            console.print(table)
    console.print(
        "time and memory ratios > 1 mean the kNN-graph mode is cheaper; peak memory includes the n x 384 float32 vectors (1.5 KiB per row)."
    )


if __name__ == "__main__":
    main()
