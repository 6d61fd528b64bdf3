"""Reviewer decisions as must-link and cannot-link constraints on grouping.

A review file (written by ``eclip report`` as ``review.csv``) has one row per listed catalog
row: ``group_id, id, decision``. In each group, the rows marked ``same`` must stay together
(must-link), and a row marked ``different`` may not share a group with any other row of that
group (cannot-link). Empty decisions say nothing.

Grouping under constraints is the constrained agglomeration of COP-KMeans-style clustering
(Wagstaff et al., "Constrained K-means Clustering with Background Knowledge", ICML 2001),
applied to match graphs: must-link pairs are joined first, then accepted match edges in
decreasing score, and an edge is dropped when it would put a cannot-link pair in one group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import DisjointSet

from eclip.errors import CatalogError
from eclip.rundir import restore_text_columns

DECISIONS = ("same", "different", "")


@dataclass(frozen=True)
class Constraints:
    """Pairs of row positions: ``must`` and ``cannot``, each ``(a, b)`` int64 arrays."""

    must_a: np.ndarray
    must_b: np.ndarray
    cannot_a: np.ndarray
    cannot_b: np.ndarray

    def __len__(self) -> int:
        return len(self.must_a) + len(self.cannot_a)

    @classmethod
    def from_answers(cls, a: np.ndarray, b: np.ndarray, same: np.ndarray) -> "Constraints":
        """Answered pairs as constraints: ``(m,)`` row positions ``a``, ``b`` and ``(m,)`` bool
        ``same``; the same pairs must link, the others cannot."""
        a, b, same = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(same, bool)
        return cls(a[same], b[same], a[~same], b[~same])

    def __add__(self, other: "Constraints") -> "Constraints":
        return Constraints(*(np.concatenate([x, y]).astype(np.int64) for x, y in zip(self.arrays(), other.arrays())))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(must_a, must_b, cannot_a, cannot_b)``."""
        return self.must_a, self.must_b, self.cannot_a, self.cannot_b


def identical_text_constraints(texts: list[str]) -> Constraints:
    """Must-link every row to the other rows with the same text (case and white space
    aside): identical listings are one product whatever the grouping method (``mutual``
    alone would pair off the ties and leave the rest single). Empty texts link nothing.

    Args:
        texts: ``n`` titles (the text columns as embedded).

    Returns:
        Must-link pairs chaining each set of identical rows (``k - 1`` pairs for ``k`` rows);
        no cannot-link pairs.
    """
    key = pl.Series([" ".join(t.lower().split()) for t in texts])
    frame = pl.DataFrame({"key": key, "row": np.arange(len(texts), dtype=np.int64)}).filter(pl.col("key") != "")
    chained = frame.sort("key", "row").with_columns(pl.col("row").shift(1).over("key").alias("prev")).drop_nulls("prev")
    none = np.zeros(0, np.int64)
    return Constraints(
        chained["prev"].to_numpy().astype(np.int64), chained["row"].to_numpy().astype(np.int64), none, none
    )


def read_decisions_csv(path: Path, columns: tuple[str, ...], what: str, made_by: str) -> pl.DataFrame:
    """A reviewer's CSV (review or label file), every column as text.

    Raises:
        CatalogError: missing file, unreadable CSV, or missing ``columns``; ``what`` names
            the kind of file and ``made_by`` says which command writes one.
    """
    if not path.is_file():
        raise CatalogError(f"{path}: no such {what} ({made_by}).")
    try:
        df = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise CatalogError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}).") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {', '.join(missing)}; a {what} has {', '.join(columns)} ({made_by})."
        )
    return restore_text_columns(df)  # undo eclip's formula guard


#: The review file's columns naming the run it was written for: its groups' fingerprint
#: (:func:`groups_fingerprint`) and its directory.
RUN_COLUMN = "run"
RUN_DIR_COLUMN = "run_dir"


def groups_fingerprint(groups: pl.DataFrame) -> str:
    """16 hex digits naming a run's match groups: a SHA-256 of its ``(id, group_id)`` rows in
    id order (the same groups, the same fingerprint)."""
    import hashlib

    rows = groups.select(pl.col("id").cast(pl.String), pl.col("group_id").cast(pl.Int64)).sort("id")
    h = hashlib.sha256()
    for i, g in rows.iter_rows():
        h.update(f"{i}\x1f{g}\x1e".encode())
    return h.hexdigest()[:16]


def check_review_run(path: str | Path, candidates: list[Path]) -> Path | None:
    """The groups file a review was written for, after checking every reviewed row against it.

    A review file from ``eclip report`` names its run's fingerprint (column ``run``) and
    directory (``run_dir``); the groups with that fingerprint are looked for in that
    directory (``groups.parquet``, ``reviewed/*.parquet``) and among ``candidates``. A review
    without the ``run`` column (written by hand) is not checked (``None``).

    Raises:
        CatalogError: no candidate is the run the review was written for (a stale file), or
            a row's group does not hold its id there (a typo), naming the row.
    """
    p = Path(path)
    df = read_decisions_csv(
        p, ("group_id", "id", "decision"), "review file", "eclip report writes review.csv beside the report"
    )
    if RUN_COLUMN not in df.columns:
        return None
    wanted = {v for v in df[RUN_COLUMN].to_list() if v}
    if len(wanted) != 1:
        raise CatalogError(
            f"{p}: column {RUN_COLUMN} names {len(wanted)} runs; a review file is written for one run (rerun eclip report)."
        )
    fp = wanted.pop()
    if RUN_DIR_COLUMN in df.columns:
        for folder in {v for v in df[RUN_DIR_COLUMN].to_list() if v}:
            candidates = [
                Path(folder) / "groups.parquet",
                *sorted((Path(folder) / "reviewed").glob("*.parquet")),
                *candidates,
            ]
    for cand in candidates:
        if not cand.is_file():
            continue
        groups = pl.read_parquet(cand, columns=["id", "group_id"])
        if groups_fingerprint(groups) != fp:
            continue
        group_of = dict(zip(groups["id"].cast(pl.String).to_list(), groups["group_id"].to_list()))
        for r, (g, i) in enumerate(zip(df["group_id"].to_list(), df["id"].to_list()), start=1):
            if g is None or not g.strip().lstrip("-").isdigit() or group_of.get(i) != int(g):
                have = sorted(set(group_of.values()))
                where = f"{i!r} is in group {group_of[i]} there" if i in group_of else f"{i!r} is not in it"
                what = (
                    f"group {g} is not in that run"
                    if g is None or not g.strip().lstrip("-").isdigit() or int(g) not in set(have)
                    else f"group {g} does not hold this id"
                )
                raise CatalogError(
                    f"{p}, row {r}: {what} ({where}); the file was edited or written for another run. Rerun eclip report on the run and review again."
                )
        return cand
    raise CatalogError(
        f"{p} was written for run {fp}, which is not {' nor '.join(str(c) for c in candidates if c.is_file()) or 'here'}; "
        f"it is stale or belongs to another run. Rerun eclip report on this run and review again (or delete its {RUN_COLUMN} column to use it unchecked)."
    )


def read_review(path: str | Path, ids: list[str]) -> Constraints:
    """Constraints from a filled-in review CSV.

    Args:
        path: CSV with columns ``group_id, id, decision`` (more columns are ignored).
        ids: the catalog's ids, row order.

    Raises:
        CatalogError: missing file or columns, an unknown decision, an id not in the
            catalog, or one row listed twice with different decisions, naming the file, rows
            (1-based, header excluded) and column.
    """
    p = Path(path)
    df = read_decisions_csv(
        p, ("group_id", "id", "decision"), "review file", "eclip report writes review.csv beside the report"
    )
    pos = {x: i for i, x in enumerate(ids)}
    must: list[tuple[int, int]] = []
    cannot: list[tuple[int, int]] = []
    groups: dict[str, list[tuple[int, str]]] = {}
    said: dict[tuple[str, str], tuple[int, str]] = {}
    for r, (g, i, d) in enumerate(zip(df["group_id"].to_list(), df["id"].to_list(), df["decision"].to_list()), start=1):
        d = (d or "").strip().lower()
        if d not in DECISIONS:
            raise CatalogError(
                f"{p}, row {r}, column decision: {d!r} is not a decision; write same, different, or leave it empty."
            )
        if i is None or i not in pos:
            raise CatalogError(f"{p}, row {r}, column id: {i!r} is not an id of this catalog.")
        if g is None:
            raise CatalogError(f"{p}, row {r}, column group_id: empty.")
        first = said.get((g, i))
        if first is not None and d and first[1] and d != first[1]:
            raise CatalogError(
                f"{p}, rows {first[0]} and {r}: id {i!r} of group {g} is marked both {first[1]} and {d}; keep one of the two rows."
            )
        if first is None or (d and not first[1]):
            said[(g, i)] = (r, d)
        groups.setdefault(g, []).append((pos[i], d))
    for rows in groups.values():
        same = [i for i, d in rows if d == "same"]
        must += [(same[0], j) for j in same[1:]]
        for i, d in rows:
            if d == "different":
                cannot += [(i, j) for j, _ in rows if j != i]
    clash = {tuple(sorted(x)) for x in must} & {tuple(sorted(x)) for x in cannot}
    if clash:
        x, y = min(clash)
        raise CatalogError(f"{p}: rows {ids[x]!r} and {ids[y]!r} are marked both same and different.")

    def arr(pairs: list[tuple[int, int]], k: int) -> np.ndarray:
        return np.array([x[k] for x in pairs], dtype=np.int64)

    return Constraints(arr(must, 0), arr(must, 1), arr(cannot, 0), arr(cannot, 1))


def constrained_edges(
    n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray, accepted: np.ndarray, c: Constraints
) -> tuple[np.ndarray, np.ndarray]:
    """The edges that group ``n`` rows under must-link and cannot-link constraints.

    Args:
        a, b, score: ``(p,)`` candidate pairs and scores. accepted: ``(p,)`` bool, the edges
            grouping accepted before constraints.
        c: the constraints; a must-link wins over the edges, a cannot-link over both.

    Returns:
        ``(accepted, must)``: the ``(p,)`` bool candidate edges kept, and which of ``c``'s
        must-link pairs were joined (one that would complete a cannot-link through other
        must-links is not). The groups are the connected components of both.
    """
    if not len(c.cannot_a):  # must-links alone never drop an edge: nothing to walk
        return np.asarray(accepted, dtype=bool).copy(), np.ones(len(c.must_a), dtype=bool)
    ds = DisjointSet(range(n))
    banned: dict[int, set[int]] = {}
    for x, y in zip(c.cannot_a.tolist(), c.cannot_b.tolist()):
        banned.setdefault(x, set()).add(y)
        banned.setdefault(y, set()).add(x)
    # rows of each set that carry cannot-links, keyed by the set's root
    carriers: dict[int, set[int]] = {r: {r} for r in banned}

    def join(x: int, y: int) -> bool:
        rx, ry = ds[x], ds[y]
        if rx == ry:
            return True
        cx, cy = carriers.get(rx, set()), carriers.get(ry, set())
        if any(ds[o] == ry for r in cx for o in banned[r]):
            return False
        ds.merge(x, y)
        root = ds[x]
        merged = cx | cy
        carriers.pop(rx, None)
        carriers.pop(ry, None)
        if merged:
            carriers[root] = merged
        return True

    must = np.array([join(x, y) for x, y in zip(c.must_a.tolist(), c.must_b.tolist())], dtype=bool)
    kept = np.zeros(len(a), dtype=bool)
    cand = np.flatnonzero(accepted)
    for e in cand[np.argsort(-score[cand], kind="stable")].tolist():
        kept[e] = join(int(a[e]), int(b[e]))
    return kept, must
