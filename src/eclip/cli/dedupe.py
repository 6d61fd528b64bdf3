"""``eclip dedupe`` (whole catalogs, and new rows ``--against`` an index)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional, cast

import typer
from rich.table import Table

from eclip.cli.options import (
    AllowOutsideOpt,
    AllowPrivateOpt,
    BatchSizeOpt,
    CatalogArg,
    EncodingOpt,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    ModelOpt,
    RayOpt,
    RayWorkersOpt,
    RuntimeOpt,
    SepOpt,
    TextColsOpt,
    WorkersOpt,
    finite,
    neighbours_opt,
    ray_runner,
    source_options,
    split_cols,
)
from eclip.errors import EclipError
from eclip.matcher.cascade import DEFAULT_BAND
from eclip.matcher.grouping import GroupingMethod
from eclip.progress import console
from eclip.rundir import read_json


def dedupe(
    catalog: CatalogArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory for groups.parquet, pairs.parquet, manifest.json and caches.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ],
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    sep: SepOpt = None,
    encoding: EncodingOpt = None,
    model: ModelOpt = "minilm",
    runtime: RuntimeOpt = "auto",
    embeddings: Annotated[
        Optional[Path],
        typer.Option(
            help="Embeddings directory from `eclip embed` (instead of --model).", metavar="DIR", rich_help_panel="Model"
        ),
    ] = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    allow_private_urls: AllowPrivateOpt = False,
    signals: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Signals among text, image, fused, phash (repeat, or separate by commas). Default: all the "
            "embeddings have.",
            metavar="LIST",
            rich_help_panel="Signals",
        ),
    ] = None,
    image_threshold: Annotated[
        float,
        typer.Option(
            callback=finite, help="Minimum image-embedding cosine of a match.", metavar="COS", rich_help_panel="Signals"
        ),
    ] = 0.9,
    fused_threshold: Annotated[
        float,
        typer.Option(
            callback=finite, help="Minimum fused-embedding cosine of a match.", metavar="COS", rich_help_panel="Signals"
        ),
    ] = 0.85,
    phash_max_distance: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="Largest pHash Hamming distance (bits of 64) of a match.",
            metavar="BITS",
            rich_help_panel="Signals",
        ),
    ] = 8,
    phash_col: Annotated[
        Optional[str],
        typer.Option(
            help="Column of precomputed 64-bit pHashes (16 hex digits or integers): the phash signal, without images.",
            metavar="COL",
            rich_help_panel="Signals",
        ),
    ] = None,
    tfidf_knn_max_rows: Annotated[
        int,
        typer.Option(
            min=0,
            help="Up to this many rows, character n-gram TF-IDF neighbours are candidates too (any language).",
            metavar="ROWS",
            rich_help_panel="Signals",
        ),
    ] = 100_000,
    workers: WorkersOpt = -1,
    k: Annotated[int, neighbours_opt("Neighbours per row in the kNN self-join.", "Grouping")] = 10,
    method: Annotated[
        Optional[GroupingMethod],
        typer.Option(
            help="Grouping: auto (default: mutual or average, chosen from the catalog), mutual (reciprocal best match), "
            "average (average linkage: groups of any size, no chaining) or components (threshold + connected components).",
            metavar="NAME",
            rich_help_panel="Grouping",
        ),
    ] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            callback=finite,
            help="Minimum score of a match, on the raw score (about -0.7 to 1.3: a mean of cosines, +0.3 for agreeing "
            "codes, -0.2 per quantity or brand conflict). Default: learned from the catalog (match probability 0.5).",
            metavar="SCORE",
            rich_help_panel="Grouping",
        ),
    ] = None,
    calibration: Annotated[
        Optional[Path],
        typer.Option(
            help="calibration.json from `eclip eval --sweep`: use its method and threshold.",
            metavar="FILE",
            rich_help_panel="Grouping",
        ),
    ] = None,
    lexical: Annotated[
        bool,
        typer.Option(
            "--lexical/--no-lexical",
            help="Add TF-IDF char n-gram and model-code signals to the embedding score.",
            metavar="",
            rich_help_panel="Grouping",
        ),
    ] = True,
    batch_size: BatchSizeOpt = 64,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Embeddings directory to write and reuse. Default: OUT/embeddings.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ] = None,
    flat_max: Annotated[
        int,
        typer.Option(
            min=2,
            help="Below this many rows, search is exact (Flat); above, IVF-PQ with an SQ8 re-ranking store.",
            metavar="N",
            rich_help_panel="Performance",
        ),
    ] = 200_000,
    against: Annotated[
        Optional[Path],
        typer.Option(
            help="Index directory (`eclip index build`): match only these rows against it and its groups; existing group ids stay.",
            metavar="INDEX",
            rich_help_panel="Grouping",
        ),
    ] = None,
    brand_col: Annotated[
        Optional[str],
        typer.Option(
            help="Brand column for the brand comparison (a conflict counts against a match). Default: brand/manufacturer when present; '' for none.",
            metavar="COL",
            rich_help_panel="Signals",
        ),
    ] = None,
    price_col: Annotated[
        Optional[str],
        typer.Option(
            help="Price column for the price ratio in pairs.parquet. Default: price when present; '' for none.",
            metavar="COL",
            rich_help_panel="Signals",
        ),
    ] = None,
    review: Annotated[
        Optional[Path],
        typer.Option(
            help="Filled-in review.csv from `eclip report`: 'same' rows are kept together (must-link), 'different' rows split out (cannot-link).",
            metavar="CSV",
            rich_help_panel="Grouping",
        ),
    ] = None,
    match_model: Annotated[
        Optional[Path],
        typer.Option(
            help="Match model from `eclip learn`: it scores every candidate pair (--threshold is "
            "then a probability), and its labelled pairs are kept as must-link / cannot-link.",
            metavar="FILE",
            rich_help_panel="Grouping",
        ),
    ] = None,
    self_train: Annotated[
        bool,
        typer.Option(
            "--self-train",
            help="Two passes: fine-tune the text model on the first pass's most certain matches "
            "(e-CLIP on the catalog's own pairs; minutes on a CPU), then dedupe with it.",
            rich_help_panel="Model",
        ),
    ] = False,
    self_train_pairs: Annotated[
        int,
        typer.Option(
            min=2, help="Most certain pairs that --self-train trains on.", metavar="N", rich_help_panel="Model"
        ),
    ] = 4000,
    cascade: Annotated[
        Optional[str],
        typer.Option(
            help="A second, stronger text model for the pairs --model leaves uncertain (e.g. --model minilm-static --cascade minilm): "
            "only their rows are embedded by it.",
            metavar="MODEL",
            rich_help_panel="Model",
        ),
    ] = None,
    cascade_band: Annotated[
        float,
        typer.Option(
            callback=finite,
            help="--cascade refines the pairs whose first-pass match probability lies in (P, 1 - P).",
            metavar="P",
            rich_help_panel="Model",
        ),
    ] = DEFAULT_BAND,
    no_cascade_knn: Annotated[
        bool,
        typer.Option(
            "--no-cascade-knn",
            help="--cascade's model only rescores; by default its nearest neighbours among the refined rows are candidates too.",
            rich_help_panel="Model",
        ),
    ] = False,
    cascade_max_rows: Annotated[
        Optional[int],
        typer.Option(
            help="At most N rows for --cascade, the most uncertain pairs first.", metavar="N", rich_help_panel="Model"
        ),
    ] = None,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Deduplicate a catalog: every row gets a match group (singletons included).

    With --against INDEX, only the catalog's rows are matched, against the index and its
    groups; then `eclip index add INDEX CATALOG --groups OUT/groups.parquet` appends them.
    """
    from eclip import api

    cfg = api.DedupeConfig(
        **source_options(
            id_col, text_cols, image_col, image_root, allow_outside_root, model, sep, encoding, allow_private_urls
        ),
        runtime=runtime,
        embeddings=embeddings,
        signals=tuple(split_cols(signals) or ()) if signals is not None else None,
        image_threshold=image_threshold,
        fused_threshold=fused_threshold,
        phash_max_distance=phash_max_distance,
        phash_col=phash_col,
        tfidf_knn_max_rows=tfidf_knn_max_rows,
        workers=workers,
        k=k,
        lexical=lexical,
        batch_size=batch_size,
        cache_dir=cache_dir,
        flat_max=flat_max,
        review=review,
        brand_col=brand_col,
        price_col=price_col,
        match_model=match_model,
        ray=ray_runner(ray, ray_workers),
        cascade=cascade,
        cascade_band=cascade_band,
        cascade_max_rows=cascade_max_rows,
        cascade_knn=not no_cascade_knn,
    )
    if calibration is not None:
        method_, threshold_ = api.read_calibration(calibration)
        cfg = dataclasses.replace(cfg, method=cast(GroupingMethod, method_), threshold=threshold_)  # checked on replace
        meaning = read_json(calibration).get("meaning")
        if meaning:
            console.print(f"[yellow]{calibration}: {meaning}.[/]")
    if method is not None:
        cfg = dataclasses.replace(cfg, method=method)
    if threshold is not None:
        cfg = dataclasses.replace(cfg, threshold=threshold)
    if self_train and against is not None:
        raise EclipError("--self-train does not apply with --against: run it on the whole catalog")
    if cascade and (against is not None or self_train):
        raise EclipError(
            f"--cascade does not apply with {'--against' if against is not None else '--self-train'}: run it on its own"
        )
    if against is not None:
        m = api.dedupe_against(catalog, against, out, cfg)
        c = m["counts"]
        table = Table(title=f"eclip dedupe {catalog} --against {against}", show_header=False)
        table.add_row("rows", f"{c['rows']:,} ({c['already_indexed']:,} already indexed)")
        table.add_row(
            "joined an existing group",
            f"{c['joined']:,}"
            + (
                f" ({c['rows_with_also_matches']:,} also match other groups: see also_matches)"
                if c["rows_with_also_matches"]
                else ""
            ),
        )
        table.add_row("new groups (size > 1) / singletons", f"{c['new_group']:,} rows / {c['singleton']:,}")
        table.add_row(
            "method / threshold",
            f"{m['matching']['method']} / {m['matching']['threshold']}"
            + (" (with lexical signals)" if m["matching"]["lexical"] else ""),
        )
        table.add_row("time", f"{m['timings_s']['total']:.1f} s")
        table.add_row("written", f"{out}/groups.parquet, pairs.parquet, manifest.json")
        console.print(table)
        return
    if self_train:
        manifest = api.dedupe_self_trained(catalog, out, cfg, api.SelfTrainConfig(max_pairs=self_train_pairs))
    else:
        manifest = api.dedupe(catalog, out, cfg)
    c = manifest["counts"]
    table = Table(title=f"eclip dedupe: {catalog}", show_header=False)
    table.add_row("rows", f"{c['rows']:,}")
    table.add_row(
        "empty text / unmatchable (kept as singletons)", f"{c['empty_text_rows']:,} / {c['unmatchable_rows']:,}"
    )
    table.add_row("signals", ", ".join(manifest["matching"]["signals"]))
    table.add_row("candidate pairs", f"{c['candidate_pairs']:,}")
    by = ", ".join(f"{k} {v:,}" for k, v in c["matched_pairs_by_signal"].items())
    table.add_row("matched pairs", f"{c['matched_pairs']:,}" + (f" (passing: {by})" if by else ""))
    table.add_row(
        "match groups (size > 1)", f"{c['multi_row_groups']:,} holding {c['rows_in_multi_row_groups']:,} rows"
    )
    mm = manifest["matching"]
    on = "match probability (learned)" if mm["threshold_on"] == "match_probability" else "score"
    table.add_row(
        "method / threshold",
        f"{mm['method_used']}" + (" (auto)" if mm["method"] == "auto" else "") + f" / {mm['threshold']:.4g} on {on}",
    )
    if mm.get("match_model"):
        mdl = mm["match_model"]
        cv = mdl["cross_validated"]
        table.add_row(
            "match model",
            f"{match_model} ({mdl['labels']} labels"
            + (f"; cross-validated P {cv['precision']:.3f} R {cv['recall']:.3f}" if cv else "")
            + f"), used: {mdl.get('use', 'learned')}",
        )
        at = mm["learned"].get("expected_at_threshold") if isinstance(mm["learned"], dict) else None
        if at:
            table.add_row(
                "expected at threshold",
                f"precision {at['precision']:.3f}, recall {at['recall']:.3f}, F1 {at['f1']:.3f} (the model's own estimate)",
            )
    if mm.get("cascade"):
        cc = mm["cascade"]
        table.add_row(
            "cascade",
            f"{cc['model']}: {cc['skipped']}"
            if cc.get("skipped")
            else f"{cc['model']}: {cc['rows']:,} rows ({cc['row_share']:.1%}) of {cc['uncertain_pairs']:,} uncertain pairs, "
            f"{cc['refined_pairs']:,} pairs rescored, {cc['embed_s']:.0f} s",
        )
    if manifest.get("self_training"):
        st = manifest["self_training"]
        table.add_row(
            "self-training",
            f"{st['pairs']:,} certain pairs of the first pass, {st['steps']} steps in {st['seconds']:.0f} s "
            f"(loss {st['loss_first']:.3f} -> {st['loss_last']:.3f}); model in {out}/self-train/model",
        )
    table.add_row("index", ", ".join(f"{k}: {v.get('factory') or v.get('kind')}" for k, v in manifest["index"].items()))
    table.add_row("time", f"{manifest['timings_s']['total']:.1f} s")
    table.add_row("written", f"{out}/groups.parquet, pairs.parquet, manifest.json")
    console.print(table)
