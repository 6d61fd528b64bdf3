"""``eclip cluster``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from eclip.checks import Vectors
from eclip.cli.options import (
    AllowOutsideOpt,
    EncodingOpt,
    GoldIdColOpt,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    ModelOpt,
    SepOpt,
    SingletonClusterOpt,
    SourceArg,
    TextColsOpt,
    finite,
    neighbours_opt,
    source_options,
)
from eclip.progress import console


def cluster(
    source: SourceArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory for clusters.parquet, cluster_summary.parquet, manifest.json and caches.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ],
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    sep: SepOpt = None,
    encoding: EncodingOpt = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    vectors: Annotated[
        Optional[Vectors],
        typer.Option(
            help="Vectors to cluster: text, image or fused. Default: fused with images, else text.",
            metavar="KIND",
            rich_help_panel="Clustering",
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="auto, pca (HDBSCAN on PCA-reduced vectors) or knn (HDBSCAN on the sparse kNN "
            "distance graph). auto: knn from 5,000 rows (bench/cluster.py).",
            metavar="MODE",
            rich_help_panel="Clustering",
        ),
    ] = "auto",
    min_cluster_size: Annotated[
        int,
        typer.Option(
            min=2, help="Smallest cluster; smaller groups are noise (-1).", metavar="N", rich_help_panel="Clustering"
        ),
    ] = 5,
    min_samples: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Density neighbours (core distance). Default: --min-cluster-size.",
            metavar="N",
            rich_help_panel="Clustering",
        ),
    ] = None,
    selection: Annotated[
        str,
        typer.Option(
            help="Cluster selection: eom (excess of mass, fewer larger clusters) or leaf (many fine clusters).",
            metavar="NAME",
            rich_help_panel="Clustering",
        ),
    ] = "eom",
    epsilon: Annotated[
        float,
        typer.Option(
            min=0.0,
            callback=finite,
            help="cluster_selection_epsilon: merge clusters closer than this (unit-vector Euclidean distance).",
            metavar="EPS",
            rich_help_panel="Clustering",
        ),
    ] = 0.0,
    pca_dim: Annotated[
        int, typer.Option(min=1, help="Dimensions PCA keeps in pca mode.", metavar="N", rich_help_panel="Clustering")
    ] = 32,
    k: Annotated[int, neighbours_opt("Neighbours per row of the kNN graph in knn mode.", "Clustering")] = 15,
    gold_col: Annotated[
        Optional[str],
        typer.Option(
            help="Gold label column (in the catalog, or in --gold): adds ARI, NMI, B-cubed and the noise fraction.",
            metavar="COL",
            rich_help_panel="Gold",
        ),
    ] = None,
    gold: Annotated[
        Optional[Path],
        typer.Option(help="Gold labels table (default: the catalog).", metavar="FILE", rich_help_panel="Gold"),
    ] = None,
    gold_id_col: GoldIdColOpt = None,
    singleton_cluster: SingletonClusterOpt = None,
) -> None:
    """Cluster products with HDBSCAN; each cluster's top terms.

    Writes clusters.parquet (-1 = noise) and a per-cluster summary with top terms; metrics with --gold-col.
    """
    from eclip import api
    from eclip.cluster import HdbscanSettings

    cfg = api.ClusterConfig(
        **source_options(id_col, text_cols, image_col, image_root, allow_outside_root, model, sep, encoding),
        vectors=vectors,
        hdbscan=HdbscanSettings(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            mode=mode,
            pca_dim=pca_dim,
            k=k,
            selection=selection,
            epsilon=epsilon,
        ),
        gold=gold,
        gold_col=gold_col,
        gold_id_col=gold_id_col,
        singleton_clusters=tuple(singleton_cluster or ()),
    )
    m = api.cluster(source, out, cfg)
    c = m["counts"]
    table = Table(title=f"eclip cluster: {source}", show_header=False)
    table.add_row(
        "rows",
        f"{c['rows']:,}"
        + (f" ({c['no_vector_rows']:,} without {m['embeddings']['vectors']} vectors)" if c["no_vector_rows"] else ""),
    )
    table.add_row(
        "mode",
        f"{m['clustering']['mode']} on {m['embeddings']['vectors']} vectors, min_cluster_size {m['clustering']['min_cluster_size']}",
    )
    table.add_row(
        "clusters", f"{c['clusters']:,} (largest {c['largest_cluster']:,}, median size {c['median_cluster_size']:g})"
    )
    table.add_row("noise rows", f"{c['noise_rows']:,} ({c['noise_rows'] / max(c['rows'], 1):.1%})")
    if m["metrics"]:
        mm = m["metrics"]
        table.add_row("ARI / NMI", f"{mm['ari']:.4f} / {mm['nmi']:.4f} (noise rows as singletons)")
        table.add_row(
            "B-cubed P / R / F1", f"{mm['bcubed_precision']:.4f} / {mm['bcubed_recall']:.4f} / {mm['bcubed_f1']:.4f}"
        )
    table.add_row("time", f"{m['timings_s']['total']:.1f} s (HDBSCAN {m['timings_s']['hdbscan']:.1f} s)")
    table.add_row("written", f"{out}/clusters.parquet, cluster_summary.parquet, manifest.json")
    console.print(table)
