"""The ``label`` and ``learn`` jobs: a reviewer labels the pairs worth labelling, and a match
model is fitted on the labels (:mod:`eclip.matcher.model`).

Both read a ``dedupe`` run directory: its ``pairs.parquet`` (every candidate pair with its
signals) and ``groups.parquet`` (the catalog's ids, in row order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog, load_recorded_catalog
from eclip.errors import RunDirError
from eclip.jobs import label_store as store
from eclip.jobs.run import created, versions
from eclip.matcher.constraints import Constraints
from eclip.matcher.label_check import check_labels
from eclip.matcher.labels import LABEL_COLUMNS, RANDOM_SHARE, Labels, choose_pairs, pair_key, read_labels
from eclip.matcher.model import MatchModel, fit_match_model, model_constraints, pair_features
from eclip.matcher.signals import describe_conflicts
from eclip.progress import console
from eclip.rundir import MANIFEST, fingerprint, read_json, refuse_overwrite, write_csv

#: Default label file name inside a run directory.
LABEL_FILE = "label.csv"
#: Default match model file name inside a run directory.
MODEL_FILE = "match_model.json"
#: Signal columns copied into the label file for the reviewer.
SHOWN_SIGNALS = (
    "score",
    "cos_embedding",
    "cos_tfidf",
    "code",
    "quantity",
    "brand",
    "price_ratio",
    "cos_image",
    "cos_fused",
    "phash_distance",
)


@dataclass
class RunPairs:
    """A dedupe run's candidate pairs, ready for labelling and learning.

    Attributes:
        dir: the run directory. manifest: its manifest.
        ids: the catalog's ``n`` ids, in row order.
        pairs: ``pairs.parquet``.
        a, b: ``(p,)`` int64 row positions of the pairs.
        columns: the numeric columns of ``pairs`` as ``(p,)`` float64 (NaN for null).
        x, names: ``(p, f)`` float64 features of every pair (:func:`pair_features`).
        prior: ``(p,)`` float32 the run's label-free match probability (from its score
            mixture; the min-max scaled score when the run learned none).
        groups: ``(n,)`` int64 the run's group of each row.
    """

    dir: Path
    manifest: dict[str, Any]
    ids: list[str]
    pairs: pl.DataFrame
    a: np.ndarray
    b: np.ndarray
    columns: dict[str, np.ndarray]
    x: np.ndarray
    names: list[str]
    prior: np.ndarray
    groups: np.ndarray

    @property
    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The run's groups of each pair's two rows: what two pairs of a batch should not share."""
        return self.groups[self.a], self.groups[self.b]

    def label_free(self) -> tuple[np.ndarray, float]:
        """``((p,) values, threshold)``: how the run grouped without labels (on its match
        probability or its score)."""
        m = self.manifest.get("matching", {})
        on = self.prior if m.get("threshold_on") == "match_probability" else self.columns["score"]
        return np.nan_to_num(on, nan=-np.inf).astype(np.float32), float(m.get("threshold", 0.5))

    @property
    def key(self) -> np.ndarray:
        """``(p,)`` order-free pair keys (:func:`eclip.matcher.labels.pair_key`)."""
        return pair_key(self.a, self.b)

    def catalog(self) -> Catalog:
        """The run's catalog, read with the run's columns.

        Raises:
            RunDirError: the catalog file moved or changed rows since the run.
        """
        inputs = self.manifest.get("inputs", {})
        path = Path(inputs.get("catalog", ""))
        if not path.is_file():
            raise RunDirError(f"{self.dir}: its catalog {path} is gone; the titles to review come from it.")
        cat = load_recorded_catalog(inputs)
        if cat.ids != self.ids:
            raise RunDirError(
                f"{path} changed since the run {self.dir} ({len(cat):,} rows now, {len(self.ids):,} then); run eclip dedupe again."
            )
        return cat

    def locate(self, labels: Labels) -> np.ndarray:
        """``(m,)`` int64 index of each labelled pair among the candidate pairs, -1 if it is not one."""
        order = np.argsort(self.key)
        sorted_keys = self.key[order]
        want = pair_key(labels.a, labels.b)
        at = np.clip(np.searchsorted(sorted_keys, want), 0, max(len(sorted_keys) - 1, 0))
        found = len(sorted_keys) > 0
        hit = (sorted_keys[at] == want) if found else np.zeros(len(want), bool)
        return np.where(hit, order[at] if found else -1, -1).astype(np.int64)

    def labelled_mask(self, labels: Labels | None) -> np.ndarray:
        """``(p,)`` bool: the candidate pairs already in the label file."""
        mask = np.zeros(len(self.a), dtype=bool)
        if labels is not None:
            where = self.locate(labels)
            mask[where[where >= 0]] = True
        return mask


def open_run(run_dir: str | Path) -> RunPairs:
    """Read a dedupe run directory's pairs and features.

    Raises:
        RunDirError: not a finished ``eclip dedupe`` run (no manifest, pairs or groups), or
            a run of ``dedupe --against``.
    """
    d = Path(run_dir)
    manifest_path, pairs_path, groups_path = d / MANIFEST, d / "pairs.parquet", d / "groups.parquet"
    if not (manifest_path.is_file() and pairs_path.is_file() and groups_path.is_file()):
        raise RunDirError(
            f"{d}: not a finished eclip dedupe run (it needs manifest.json, pairs.parquet and groups.parquet); run `eclip dedupe CATALOG --out {d}` first."
        )
    manifest = read_json(manifest_path)
    if manifest.get("job") != "dedupe":
        raise RunDirError(
            f"{d}: a {manifest.get('job')!r} run; eclip label and eclip learn work on an `eclip dedupe CATALOG` run."
        )
    grouped = pl.read_parquet(groups_path, columns=["id", "group_id"])
    ids = grouped["id"].cast(pl.String).to_list()
    groups = grouped["group_id"].rank("dense").cast(pl.Int64).fill_null(-1).to_numpy()
    pairs = pl.read_parquet(pairs_path)
    pos = {x: i for i, x in enumerate(ids)}
    a = np.fromiter((pos[x] for x in pairs["id_a"].to_list()), np.int64, len(pairs))
    b = np.fromiter((pos[x] for x in pairs["id_b"].to_list()), np.int64, len(pairs))
    columns = {
        c: pairs[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        for c in pairs.columns
        if pairs[c].dtype.is_numeric()
    }
    x, names = pair_features(columns, a, b, len(ids))
    prior = columns.get("match_probability", np.full(len(pairs), np.nan))
    if np.isnan(prior).all():
        s = np.nan_to_num(columns.get("score", np.zeros(len(pairs))), nan=0.0, neginf=0.0)
        prior = (s - s.min()) / (np.ptp(s) or 1.0)
    prior = np.nan_to_num(prior, nan=0.5).astype(np.float32)
    return RunPairs(d, manifest, ids, pairs, a, b, columns, x, names, prior, groups)


def fit_on_labels(
    run: RunPairs, labels: Labels, seed: int = 0, check: bool = True
) -> tuple[MatchModel, dict[str, int]]:
    """Fit a match model on a run's labelled pairs.

    Pairs labelled ``unsure``, or waiting for a decision, are left out; so are labelled
    pairs that are not candidates of the run (the search never proposes them, so no
    signals are at hand): they are counted, and still act as constraints.

    Args:
        check: check the model against the run's label-free probability on held-out labels
            (:func:`eclip.matcher.label_check.check_labels`), and record whether it is used,
            blended or not; ``False``: fit only (to choose the next pairs).

    Returns:
        ``(model, counts)``: the model with its labels filled in, and the label counts.

    Raises:
        MatchModelError: the usable labels hold one class only.
    """
    where = run.locate(labels)
    decided = np.isin(labels.decision, ("same", "different"))
    use = decided & (where >= 0)
    y = (labels.decision[use] == "same").astype(np.int64)
    if check:
        outside = decided & (where < 0)
        extra = Constraints.from_answers(labels.a[outside], labels.b[outside], labels.decision[outside] == "same")
        method = run.manifest.get("matching", {}).get("method_used", "mutual")
        model = check_labels(
            len(run.ids),
            run.a,
            run.b,
            run.x,
            run.names,
            run.prior,
            where[use],
            y,
            method,
            run.label_free(),
            extra,
            seed,
        )
    else:
        model = fit_match_model(run.x[where[use]], y, run.names, run.x, run.prior, seed=seed)
    counts = labels.counts() | {"fitted_on": int(use.sum()), "not_candidates": int((decided & (where < 0)).sum())}
    model.labels = [
        {"id_a": run.ids[i], "id_b": run.ids[j], "decision": d}
        for i, j, d in zip(labels.a.tolist(), labels.b.tolist(), labels.decision.tolist())
        if d in ("same", "different")
    ]
    return model, counts


def learn(
    run_dir: str | Path, labels_path: str | Path | None = None, out: str | Path | None = None, seed: int = 0
) -> tuple[MatchModel, Path]:
    """Fit a match model on a run's labelled pairs and save it as JSON.

    Args:
        run_dir: an ``eclip dedupe`` run directory.
        labels_path: the label file (default ``RUN_DIR/label.csv``).
        out: where to write the model (default ``RUN_DIR/match_model.json``).

    Returns:
        ``(model, path written)``. The model's ``info`` records the catalog, the run, the
        label counts, the cross-validated precision and recall, and versions.

    Raises:
        RunDirError: not a dedupe run. CatalogError: a bad label file (unknown ids, bad
        decisions). MatchModelError: labels of one class only.
    """
    run = open_run(run_dir)
    labels_path = Path(labels_path) if labels_path else run.dir / LABEL_FILE
    path = Path(out) if out else run.dir / MODEL_FILE
    refuse_overwrite(path, [labels_path, run.manifest.get("inputs", {}).get("catalog")])  # before any work
    labels = read_labels(labels_path, run.ids)
    model, counts = fit_on_labels(run, labels, seed)
    model.info = {
        "created": created(),
        "catalog": run.manifest.get("inputs", {}).get("catalog"),
        "catalog_rows": len(run.ids),
        "run": str(run.dir.resolve()),
        "run_fingerprint": run.manifest.get("config_fingerprint"),
        "labels_file": str(labels_path.resolve()),
        "label_counts": counts,
        "signals": run.manifest.get("matching", {}).get("signals"),
        "classifier": f"logistic regression (scikit-learn) with a label-free prior; calibration: {model.calibration}",
        "used_as": model.use,
        "versions": versions(),
    }
    model.save(path)
    return model, path


def current_probability(run: RunPairs, labels: Labels | None, seed: int = 0) -> tuple[np.ndarray, MatchModel | None]:
    """``(p,)`` match probability of every candidate pair under what the labels teach so far:
    a model fitted on them when they hold both classes, else the run's own probabilities."""
    if labels is None:
        return run.prior, None
    decided = labels.decision[run.locate(labels) >= 0]
    if not ({"same", "different"} <= set(decided.tolist())):
        return run.prior, None
    model, _ = fit_on_labels(run, labels, seed, check=False)
    return model.probability(run.x), model


def label_rows(run: RunPairs, cat: Catalog, idx: np.ndarray, why: list[str], probability: np.ndarray) -> pl.DataFrame:
    """Label-file rows (no decision yet) for candidate pairs ``idx``."""
    shown = [c for c in SHOWN_SIGNALS if c in run.pairs.columns]
    sub = run.pairs[idx.tolist()]
    return pl.DataFrame(
        {
            "id_a": sub["id_a"].cast(pl.String),
            "id_b": sub["id_b"].cast(pl.String),
            "title_a": [cat.texts[i] for i in run.a[idx].tolist()],  # neutralised when written (write_labels)
            "title_b": [cat.texts[i] for i in run.b[idx].tolist()],
            "decision": [""] * len(idx),
            "chosen_by": why,
            "match_probability": np.round(probability[idx].astype(np.float64), 4),
            **({"conflicts": conflicts(sub)} if "quantity_kinds" in sub.columns else {}),
            **{c: sub[c].cast(pl.Float64).round(4) for c in shown},
        }
    )


def conflicts(pairs: pl.DataFrame) -> list[str]:
    """What each pair's titles disagree on (codes, brands, numbers, colours, units), for the
    reviewer (:func:`eclip.matcher.signals.describe_conflicts`)."""

    def col(name: str) -> np.ndarray | None:
        return pairs[name].cast(pl.Float64).fill_null(0.0).to_numpy() if name in pairs.columns else None

    return describe_conflicts(pairs["quantity_kinds"].fill_null(0).to_numpy(), col("code"), col("brand"))


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column of ``frame`` as text: how a label file is kept and written."""
    return frame.select([pl.col(c).cast(pl.String) for c in frame.columns])


def write_labels(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write a label file atomically, every column as text (the decision column editable)."""
    return write_csv(as_text(frame), path, for_people=True)


def existing_labels(run: RunPairs, path: Path) -> tuple[pl.DataFrame, Labels | None]:
    """A label file's table (every column text) and pairs, or an empty table when the file
    does not exist yet."""
    if not path.exists():
        return pl.DataFrame(schema={c: pl.String for c in LABEL_COLUMNS}), None
    labels = read_labels(path, run.ids)
    return labels.table, labels


def propose(
    run_dir: str | Path, path: str | Path | None = None, batch: int = 20, seed: int | None = None
) -> dict[str, Any]:
    """Append the next ``batch`` pairs worth a reviewer's time to the label file.

    The pairs are chosen by :func:`eclip.matcher.labels.choose_pairs` on the probabilities of
    a model fitted to the labels so far (the run's own before there are any). Pairs already
    in the file are never proposed again.

    Safe beside interactive sessions on the same file: the model is fitted on the file as it
    was, then the file is re-read, the pairs chosen and appended and the file rewritten under
    its lock (:func:`eclip.jobs.label_store.label_lock`), so every answer given meanwhile is kept.

    Returns:
        ``{"file", "added", "counts", "model"}``: what was written, and the label counts.

    Raises:
        RunDirError: not a dedupe run, or its catalog is gone. CatalogError: a bad label file.
    """
    run = open_run(run_dir)
    path = Path(path) if path else run.dir / LABEL_FILE
    _, labels = existing_labels(run, path)
    prob, model = current_probability(run, labels)
    cat = run.catalog()
    with store.label_lock(path):
        table, labels = existing_labels(run, path)
        seed = len(table) if seed is None else seed
        idx, why = choose_pairs(prob, run.labelled_mask(labels), batch, seed=seed, keys=run.keys)
        rows = label_rows(run, cat, idx, why, prob)
        write_labels(pl.concat([table, as_text(rows)], how="diagonal"), path)
    counts = labels.counts() if labels is not None else {"same": 0, "different": 0, "unsure": 0, "pending": 0}
    counts["pending"] += len(idx)
    return {
        "file": str(path),
        "added": len(idx),
        "counts": counts,
        "model": model.cv.__dict__ if model is not None and model.cv else None,
        "run": fingerprint(str(run.dir.resolve())),
    }


def labelled_constraints(model: MatchModel, ids: list[str]) -> tuple:
    """The match model's labelled pairs as constraints, with the count of pairs whose ids
    this catalog lacks (a model learned on another catalog keeps no constraints there)."""
    constraints, skipped = model_constraints(model, ids)
    if skipped:
        console.print(
            f"[yellow]{skipped} of the match model's {len(model.labels)} labelled pairs name ids not in this catalog; they are not used as constraints.[/]"
        )
    return constraints, skipped


def model_summary(model: MatchModel, path: Path | None, labelled: tuple | None) -> dict[str, Any]:
    """What the manifest records of a match model."""
    c = labelled[0] if labelled else None
    return {
        "file": str(Path(path).resolve()) if path else None,
        "digest": model.digest,
        "features": model.features,
        "labels": len(model.labels),
        "learned_on": model.info.get("catalog"),
        "cross_validated": asdict(model.cv) if model.cv else None,
        "use": model.use,
        "check": model.check or None,
        "must_link_pairs": int(len(c.must_a)) if c is not None else 0,
        "cannot_link_pairs": int(len(c.cannot_a)) if c is not None else 0,
        "labelled_pairs_not_in_catalog": labelled[1] if labelled else 0,
    }


class LabelSession:
    """The interactive labelling loop's state: one pair at a time, saved after every answer.

    Pending pairs of the file are offered first; after them, each next pair is chosen by
    :func:`eclip.matcher.labels.choose_pairs` on a model refitted to every answer so far (one
    pair in ``1 / RANDOM_SHARE`` is a random one, from a random probability stratum).

    Any number of sessions, and :func:`propose`, may share a label file
    (:mod:`eclip.jobs.label_store`): every change is a re-read, merge and atomic rewrite
    under the file's lock, and the pair a session shows is claimed so that no other session
    asks it at once. An answer is on disk when :meth:`answer` returns: a kill loses none.
    """

    def __init__(self, run_dir: str | Path, path: str | Path | None = None, seed: int = 0) -> None:
        self.run = open_run(run_dir)
        self.cat = self.run.catalog()
        self.path = Path(path) if path else self.run.dir / LABEL_FILE
        self.table, _ = existing_labels(self.run, self.path)
        self.position = {x: i for i, x in enumerate(self.run.ids)}
        self.seed = seed
        self.model: MatchModel | None = None
        self.name = store.session_name()  # this session, in the claims file
        self.shown: int | None = None  # the row of self.table shown and not yet answered

    def _show(self, table: pl.DataFrame, row: int | None) -> int | None:
        """Keep ``table`` (the file as just read) and claim its ``row`` (under the lock)."""
        self.table, self.shown = table, row
        store.set_claim(self.path, self.name, None if row is None else (table["id_a"][row], table["id_b"][row]))
        return row

    def _pending(self, table: pl.DataFrame, labels: Labels | None) -> int | None:
        """The file's first pending row no other live session shows, claimed (under the lock)."""
        taken = store.claimed_by_others(self.path, self.name)
        row = None if labels is None else store.first_pending(table, labels.decision, taken)
        return None if row is None else self._show(table, row)

    def next(self) -> int | None:
        """Row of the label table (the file as re-read now) to ask about next, claimed; a new
        pair is appended (pending) in the same locked step. ``None``: every candidate pair is
        labelled or shown by another session."""
        with store.label_lock(self.path):
            table, labels = existing_labels(self.run, self.path)
            row = self._pending(table, labels)
        if row is not None:
            return row
        prob, self.model = current_probability(self.run, labels, self.seed)  # outside the lock: the slow part
        with store.label_lock(self.path):
            table, labels = existing_labels(self.run, self.path)
            row = self._pending(table, labels)  # one another session appended meanwhile
            if row is not None:
                return row
            share = float(RANDOM_SHARE > 0 and (len(table) + 1) % round(1 / RANDOM_SHARE) == 0)  # a random turn
            idx, why = choose_pairs(prob, self.run.labelled_mask(labels), 1, self.seed + len(table), share)
            if not len(idx):
                return self._show(table, None)
            table = pl.concat([table, as_text(label_rows(self.run, self.cat, idx, why, prob))], how="diagonal")
            write_labels(table, self.path)
            return self._show(table, len(table) - 1)

    def pair(self, row: int) -> dict[str, Any]:
        """One label-table row as a dict, with both catalog rows (every column) added."""
        rec = self.table.row(row, named=True)
        rec["row_a"] = self.cat.table.row(self.position[rec["id_a"]], named=True)
        rec["row_b"] = self.cat.table.row(self.position[rec["id_b"]], named=True)
        rec["id_col"] = self.cat.id_col
        return rec

    def _merge(self, row: int, decision: str) -> str | None:
        """Merge an answer into the file as on disk (under the lock): the decision kept, if other."""
        table, labels = existing_labels(self.run, self.path)
        now = labels.decision if labels is not None else np.array([], dtype=str)
        merged, kept = store.merge_decision(table, now, self.table[row], decision)
        if merged is not None:
            write_labels(merged, self.path)
        return kept

    def answer(self, row: int, decision: str) -> str | None:
        """Record ``decision`` (same / different / unsure) for the pair at ``row`` of the table
        :meth:`next` returned, merged into the file under its lock, and drop the claim.

        Returns:
            ``None`` when saved; else the other decision the file already held for the pair
            (another session, or an edit of the file, answered it first): that one is kept.
        """
        with store.label_lock(self.path):
            kept = self._merge(row, decision)
            self._show(self.table, None)
        return kept

    def save(self) -> None:
        """Make sure the pair shown is in the file (pending until answered). The file is never
        rewritten from this session's table: other sessions' answers stay."""
        if self.shown is not None:
            with store.label_lock(self.path):
                self._merge(self.shown, "")

    def close(self) -> None:
        """Drop this session's claim (a process that exits drops it too)."""
        with store.label_lock(self.path):
            store.set_claim(self.path, self.name, None)
        self.shown = None

    def counts(self) -> dict[str, int]:
        """Label counts of the file as saved."""
        _, labels = existing_labels(self.run, self.path)
        return labels.counts() if labels is not None else {"same": 0, "different": 0, "unsure": 0, "pending": 0}
