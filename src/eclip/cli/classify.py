"""``eclip classify`` and ``eclip filter-adult``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from eclip.classify.zeroshot import Hierarchy
from eclip.cli.options import (
    AllowOutsideOpt,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    LogitScaleOpt,
    ModelOpt,
    SourceArg,
    TextColsOpt,
    VectorsOpt,
    finite,
    source_options,
)
from eclip.progress import console


def classify(
    source: SourceArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory for predictions.parquet, probe.npz, manifest.json and caches.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ],
    labels: Annotated[
        Optional[Path],
        typer.Option(
            help="Zero-shot labels: one per line, or Google product taxonomy paths 'A > B > C' (classified level by level).",
            metavar="FILE",
            rich_help_panel="Labels",
        ),
    ] = None,
    train: Annotated[
        Optional[Path],
        typer.Option(
            help="Labelled table (id + --label-col) to fit a logistic-regression probe on; saved as OUT/probe.npz.",
            metavar="FILE",
            rich_help_panel="Labels",
        ),
    ] = None,
    label_col: Annotated[
        Optional[str], typer.Option(help="Class column of --train.", metavar="COL", rich_help_panel="Labels")
    ] = None,
    train_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="Share of --train's labelled rows used (random, --seed); the rest stay out for `eclip eval`.",
            metavar="F",
            rich_help_panel="Labels",
        ),
    ] = 1.0,
    probe: Annotated[
        Optional[Path],
        typer.Option(
            help="A saved probe.npz to apply. With --labels: zero-shot prior x probe.",
            metavar="FILE",
            rich_help_panel="Labels",
        ),
    ] = None,
    prior_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="Weight w of the zero-shot prior: softmax(w log p_zero_shot + (1-w) log p_probe).",
            metavar="W",
            rich_help_panel="Scoring",
        ),
    ] = 0.2,
    min_score: Annotated[
        Optional[float],
        typer.Option(
            callback=finite,
            help="Below this score a row is 'unknown' (cosine for zero-shot, probability with a probe); in a taxonomy it stops descending.",
            metavar="X",
            rich_help_panel="Scoring",
        ),
    ] = None,
    k: Annotated[
        int,
        typer.Option(
            "--top-labels", "-k", "--k", min=1, help="Top labels kept per row.", metavar="K", rich_help_panel="Scoring"
        ),
    ] = 5,
    hierarchy: Annotated[
        Hierarchy,
        typer.Option(
            help="A taxonomy's classification: levels (top-down, level by level) or leaves (one choice among the leaves).",
            metavar="NAME",
            rich_help_panel="Scoring",
        ),
    ] = "levels",
    vectors: VectorsOpt = None,
    logit_scale: LogitScaleOpt = 100.0,
    template: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Prompt template with {} for the label; repeatable. Default: 5 product templates, ensembled.",
            metavar="STR",
            rich_help_panel="Scoring",
        ),
    ] = None,
    probe_c: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            callback=finite,
            help="Probe's inverse L2 regularisation C. Default: the best of 0.1, 1, 10, 100, 1000 by cross-validated macro-F1.",
            metavar="C",
            rich_help_panel="Labels",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(metavar="N", rich_help_panel="Labels")] = 0,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Classify rows into categories: zero-shot from label names (prompt ensembling), a linear probe, or both."""
    from eclip import api

    templates: dict[str, Any] = {"templates": tuple(template)} if template else {}
    cfg = api.ClassifyConfig(
        **source_options(id_col, text_cols, image_col, image_root, allow_outside_root, model),
        labels=labels,
        train=train,
        label_col=label_col,
        train_fraction=train_fraction,
        probe=probe,
        prior_weight=prior_weight,
        vectors=vectors,
        k=k,
        min_score=min_score,
        logit_scale=logit_scale,
        hierarchy=hierarchy,
        probe_c=probe_c,
        seed=seed,
        **templates,
    )
    m = api.classify(source, out, cfg)
    c = m["counts"]
    table = Table(title=f"eclip classify: {source}", show_header=False)
    table.add_row("method", f"{m['method']} on {m['embeddings']['vectors']} vectors of {m['model'].get('name')}")
    if m["labels"]:
        lb = m["labels"]
        table.add_row(
            "labels",
            f"{lb['labels']:,} ({lb['leaves']:,} leaves, depth {lb['depth']}), {len(lb['templates'])} prompt templates",
        )
    if m["probe"] and m["probe"].get("cv"):
        cv = m["probe"]["cv"]
        if "accuracy" in cv:
            table.add_row(
                "probe CV",
                f"accuracy {cv['accuracy']:.4f}, macro-F1 {cv['macro_f1']:.4f} (C {cv['C']:g}, "
                f"{cv['folds']}-fold, {cv['rows']:,} rows, {cv['classes']} classes)",
            )
    table.add_row(
        "rows",
        f"{c['rows']:,}: {c['predicted']:,} predicted, {c['unknown']:,} unknown, {c['no_vector']:,} without vectors"
        + (f"; {c['in_train']:,} trained the probe" if c["in_train"] else ""),
    )
    table.add_row("time", f"{m['timings_s']['total']:.1f} s")
    table.add_row(
        "written", f"{out}/predictions.parquet" + (", probe.npz" if "probe" in m["outputs"] else "") + ", manifest.json"
    )
    console.print(table)


def filter_adult(
    source: SourceArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory for flagged.parquet, manifest.json and caches.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ],
    threshold: Annotated[
        Optional[float],
        typer.Option(
            min=-2.0,
            max=2.0,
            callback=finite,
            help="Flag rows whose zero-shot margin reaches this (a probability with a probe). Default: calibrated with "
            "--calibrate, else a posterior chosen for --target-precision at the catalog's estimated base rate.",
            metavar="SCORE",
            rich_help_panel="Scoring",
        ),
    ] = None,
    calibrate: Annotated[
        Optional[Path],
        typer.Option(
            help="Labelled table (id + --label-col) to pick the threshold on.",
            metavar="FILE",
            rich_help_panel="Calibration",
        ),
    ] = None,
    label_col: Annotated[
        Optional[str],
        typer.Option(
            help="Column of --calibrate saying which rows are adult.", metavar="COL", rich_help_panel="Calibration"
        ),
    ] = None,
    positive: Annotated[
        Optional[str],
        typer.Option(
            help="Value of --label-col meaning adult, e.g. 'Sexual Wellness'. Default: true/1/yes.",
            metavar="VALUE",
            rich_help_panel="Calibration",
        ),
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="The threshold is the lowest reaching this precision: expected at the estimated base rate, or measured on --calibrate rows.",
            metavar="P",
            rich_help_panel="Scoring",
        ),
    ] = 0.9,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            callback=finite,
            help="Share of the labelled rows kept out of calibration (random, --seed) to measure the threshold on.",
            metavar="F",
            rich_help_panel="Calibration",
        ),
    ] = 0.0,
    fit_probe: Annotated[
        bool,
        typer.Option(
            "--fit-probe",
            help="Few-shot: fit a probe on the --calibrate rows (zero-shot prior + nearest labelled rows; 20 adult rows do); saved as OUT/adult_probe.npz.",
            metavar="",
            rich_help_panel="Calibration",
        ),
    ] = False,
    probe: Annotated[
        Optional[Path],
        typer.Option(
            help="adult_probe.npz from an earlier --fit-probe run: score with it; its threshold is chosen again at this catalog's base rate.",
            metavar="FILE",
            rich_help_panel="Calibration",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(metavar="N", rich_help_panel="Calibration")] = 0,
    vectors: VectorsOpt = None,
    id_col: IdColOpt = "id",
    text_cols: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Columns embedded (repeat, or separate by commas). Default: the title, brand and every category or breadcrumb column found by name.",
            metavar="COLS",
            rich_help_panel="Input",
        ),
    ] = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Flag adult and sexual-wellness products; labels optional.

    Without labels: zero-shot against Google's product taxonomy, a second
    pass over the catalog's own sure rows, and a threshold for the target
    precision at the catalog's estimated base rate, with intervals on
    precision and recall. With labels: calibrate the threshold, or fit a
    few-shot probe."""
    from eclip import api

    cfg = api.AdultFilterConfig(
        **source_options(id_col, text_cols, image_col, image_root, allow_outside_root, model),
        vectors=vectors,
        threshold=threshold,
        calibrate=calibrate,
        label_col=label_col,
        positive=positive,
        target_precision=target_precision,
        holdout=holdout,
        seed=seed,
        fit_probe=fit_probe,
        probe=probe,
    )
    m = api.filter_adult(source, out, cfg)
    s = m["summary"]
    table = Table(title=f"eclip filter-adult: {source}", show_header=False)
    t, b = m["threshold"], m["base_rate"]
    if m["text_signals"].get("text_cols"):
        table.add_row("text", ", ".join(m["text_signals"]["text_cols"]) + f" ({m['text_signals']['chosen']})")
    if b["estimated"] is not None:
        iv = b.get("interval")
        table.add_row(
            "base rate",
            f"{b['estimated']:.3%} estimated"
            + (f" ({iv['low']:.3%} to {iv['high']:.3%}, {iv['level']:.0%} interval)" if iv else "")
            + f"; about {b['adult_rows_expected']:,.0f} adult rows"
            + (f"; {b['with_probe']['estimated']:.4%} by the probe" if b.get("with_probe") else ""),
        )
    if b.get("second_pass"):
        sp = b["second_pass"]
        table.add_row(
            "second pass",
            f"{sp['seeds']:,} sure rows taught it; {sp['rows_raised_2x']:,} rows made 2x likelier, "
            f"{sp['rows_lowered_2x']:,} 2x less",
        )
    value = "none reached" if t["value"] is None else f"{t['value']:.4g}"
    table.add_row("threshold", f"{value} on the {t['on']} ({t['source']})")
    table.add_row("expected", _expected(t))
    table.add_row(
        "flagged",
        f"{s['flagged']:,} of {s['scored']:,} scored rows ({s['flagged_fraction']:.2%})"
        + (f"; {s['no_vector']:,} without vectors" if s["no_vector"] else ""),
    )
    if s["flagged_by_concept"]:
        table.add_row("by concept", ", ".join(f"{k_} {v:,}" for k_, v in list(s["flagged_by_concept"].items())[:5]))
    cal = m["calibration"]
    if cal:
        op = cal["on_calibration_rows"]
        table.add_row(
            "calibration",
            f"{cal['rows']:,} rows ({cal['positives']:,} positive): P {op['precision']:.4f} R {op['recall']:.4f} at {op['threshold']:.4f}",
        )
        if "holdout" in cal:
            h = cal["holdout"]
            at = h["at_calibrated_threshold"]
            table.add_row(
                "held out",
                f"{h['rows']:,} rows ({h['positives']:,} positive): P {at['precision']:.4f} "
                f"R {at['recall']:.4f} at the calibrated threshold; PR-AUC {h['pr_auc']:.4f}",
            )
            if not at["met_target"]:
                table.add_row(
                    "target",
                    f"[yellow]not met on the held-out rows (P {at['precision']:.3f} < {cal['target_precision']:g})[/]",
                )
            if "zero_shot" in h:
                table.add_row("held out, zero-shot", f"PR-AUC {h['zero_shot']['pr_auc']:.4f}")
    if m["probe"]:
        table.add_row(
            "probe",
            f"{m['probe'].get('saved') or m['probe'].get('loaded')}"
            + (
                f" ({m['probe']['cv']['positives']:,} adult and {m['probe']['cv']['rows'] - m['probe']['cv']['positives']:,} "
                f"other exemplars; out-of-fold average precision {m['probe']['cv']['average_precision']:.4f})"
                if m["probe"].get("cv")
                else ""
            ),
        )
    table.add_row("written", f"{out}/flagged.parquet, manifest.json")
    console.print(table)


def _pct_range(v: list[float]) -> str:
    return f"{v[0]:.2f} to {v[1]:.2f}"


def _expected(t: dict[str, Any]) -> str:
    """What the flags are expected to hold: precision with its interval, recall only as an
    interval (or why it is not given)."""
    if t.get("expected_precision") is None:
        parts = ["nothing flagged"]
    else:
        parts = [f"precision {t['expected_precision']:.3f}"]
        if t.get("precision_at_least") is not None:
            parts[-1] += f", at least {t['precision_at_least']:.2f}"
    if t.get("blended_precision") is not None:
        parts.append(f"with the labelled rows' precision, {t['blended_precision']:.3f}")
    if t.get("recall_interval"):
        parts.append(f"recall {_pct_range(t['recall_interval'])}")
    elif t.get("recall_note"):
        parts.append(f"recall {t['recall_note']}")
    if t.get("interval_level"):
        parts.append(f"{t['interval_level']:.0%} intervals over the base rate's doubt")
    return "; ".join(parts)
