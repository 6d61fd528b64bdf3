"""Gold labels: a file of matching id pairs, or a column of cluster ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from eclip.catalog import read_table
from eclip.errors import CatalogError, GoldError

PAIR_COLUMNS = (("id_a", "id_b"), ("id1", "id2"), ("left_id", "right_id"), ("ltable_id", "rtable_id"))


def _pairs_to_labels(ids: list[str], a: list[str], b: list[str]) -> np.ndarray:
    from eclip.matcher.grouping import component_labels

    pos = {x: i for i, x in enumerate(ids)}
    ia = np.array([pos[x] for x in a], dtype=np.int64)
    ib = np.array([pos[x] for x in b], dtype=np.int64)
    return component_labels(len(ids), ia, ib)


def _gold_pairs(p: Path, df: pl.DataFrame, cols: tuple[str, str]) -> tuple[list[str], list[str]]:
    """The id pairs of a gold pairs file, less the rows that pair an id with itself (said
    once, in yellow).

    Raises:
        GoldError: a cell of ``cols`` is empty (naming the row and column), or no row joins two
            different ids.
    """
    a = df.get_column(cols[0]).cast(pl.String).to_list()
    b = df.get_column(cols[1]).cast(pl.String).to_list()
    for col, values in zip(cols, (a, b)):
        empty = next((r for r, v in enumerate(values, start=1) if v is None or not v.strip()), None)
        if empty is not None:
            raise GoldError(f"{p}, row {empty}, column {col}: empty; every gold pair names two ids.")
    same = [r for r, (x, y) in enumerate(zip(a, b), start=1) if x == y]
    if len(same) == len(a):
        raise GoldError(
            f"{p}: every row ({len(a)}) pairs an id with itself, which says nothing; a gold pairs file lists two different ids per row."
        )
    if same:
        from eclip.progress import console

        console.print(
            f"[yellow]{p}: {len(same)} row(s) pair an id with itself (e.g. row {same[0]}); they say nothing and are skipped.[/]",
            highlight=False,
        )
        pairs = [(x, y) for x, y in zip(a, b) if x != y]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
    return a, b


def load_gold(
    path: str | Path,
    ids: list[str],
    id_col: str = "id",
    cluster_col: str | None = None,
    singleton_clusters: tuple[str, ...] = (),
) -> np.ndarray:
    """Gold group labels aligned with ``ids``.

    Two layouts are understood:

    * a pairs file with columns ``id_a, id_b`` (or ``id1, id2``, ``left_id, right_id``): gold
      groups are the connected components of the pairs; rows in no pair are singletons;
    * a table with ``id_col`` and a cluster column (``cluster_col``, or ``cluster_id`` when
      present): same cluster = same product. Clusters named in ``singleton_clusters`` (a
      catch-all bucket such as WDC's 2432) are split into singletons.

    Returns:
        ``(n,)`` int64 labels, one per entry of ``ids``.

    Raises:
        GoldError: the layout is not recognised, or gold ids are absent from ``ids``.
    """
    p = Path(path)
    try:
        df = read_table(p)
    except CatalogError as exc:
        raise GoldError(str(exc)) from exc
    cols = set(df.columns)
    known = set(ids)
    pair_cols = next((c for c in PAIR_COLUMNS if set(c) <= cols), None)
    if pair_cols and cluster_col is None:
        a, b = _gold_pairs(p, df, pair_cols)
        missing = sorted({x for x in a + b if x not in known})
        if missing:
            raise GoldError(
                f"{p}: {len(missing)} gold id(s) are not in the predictions, e.g. {missing[:5]}. "
                "Evaluate the groups of the catalog these pairs belong to."
            )
        return _pairs_to_labels(ids, a, b)
    cluster_col = cluster_col or ("cluster_id" if "cluster_id" in cols else None)
    if cluster_col is None or cluster_col not in cols or id_col not in cols:
        raise GoldError(
            f"{p}: not a gold file eclip understands. Give either pair columns id_a,id_b or an id column "
            f"({id_col!r}) with a cluster column (--gold-col). Columns are: {', '.join(df.columns)}."
        )
    gold = dict(
        zip(df.get_column(id_col).cast(pl.String).to_list(), df.get_column(cluster_col).cast(pl.String).to_list())
    )
    absent = [x for x in ids if x not in gold]
    if absent:
        raise GoldError(f"{p}: {len(absent)} predicted id(s) have no gold cluster, e.g. {absent[:5]}.")
    keys = []
    for i, x in enumerate(ids):
        c = gold[x]
        keys.append(f"\x00single{i}" if c is None or c in singleton_clusters else c)
    return np.unique(np.array(keys, dtype=object), return_inverse=True)[1].astype(np.int64)


def load_class_labels(path: str | Path, id_col: str, label_col: str) -> dict[str, str]:
    """``id -> label`` of a labelled table (a catalog with a class column, or any table with
    the id column). Rows whose label is empty are left out. With ``id_col`` ``@row``
    (:data:`eclip.catalog.ROW_ID`) rows are numbered from 1, as the catalog's were.

    Raises:
        GoldError: the file is unreadable, lacks either column, repeats an id, or has no
            labelled row.
    """
    from eclip.catalog import ROW_ID, with_row_ids

    p = Path(path)
    try:
        df = read_table(p)
    except CatalogError as exc:
        raise GoldError(str(exc)) from exc
    if id_col == ROW_ID and ROW_ID not in df.columns:
        df = with_row_ids(df)
    for col, flag in ((id_col, "--id-col"), (label_col, "--label-col")):
        if col not in df.columns:
            raise GoldError(f"{p}: no column {col!r} ({flag}). Columns are: {', '.join(df.columns)}.")
    ids = df.get_column(id_col).cast(pl.String).str.strip_chars()
    dup = ids.is_duplicated() & ids.is_not_null()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise GoldError(
            f"{p}: id {ids[i]!r} in column {id_col!r} repeats (row {i + 1} and others); a labelled file needs one row per id."
        )
    labels = df.get_column(label_col).cast(pl.String).str.strip_chars()
    keep = ids.is_not_null() & labels.is_not_null() & (labels != "")
    if not keep.any():
        raise GoldError(f"{p}: column {label_col!r} has no labels.")
    return dict(zip(ids.filter(keep).to_list(), labels.filter(keep).to_list()))


#: Label values that mean "positive" when no ``positive`` value is given.
TRUE_VALUES = ("true", "1", "yes", "y", "t")


def binary_gold(labels: dict[str, str], ids: list[str], positive: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, y)``: positions in ``ids`` of the labelled rows and their ``(m,)`` bool
    labels (``label == positive``; without ``positive``: true/1/yes).

    Raises:
        GoldError: no labelled id is among ``ids``.
    """
    pos = {x_: i for i, x_ in enumerate(ids)}
    pairs = [(pos[i], v) for i, v in labels.items() if i in pos]
    if not pairs:
        raise GoldError(
            f"none of the {len(labels):,} labelled ids is in the run (ids look like {next(iter(labels))!r} vs {ids[0]!r}); check --id-col."
        )
    rows = np.array([r for r, _ in pairs], dtype=np.int64)
    if positive is None:
        y = np.array([v.lower() in TRUE_VALUES for _, v in pairs])
    else:
        y = np.array([v == positive for _, v in pairs])
    return rows, y


def load_gold_cross_pairs(
    path: str | Path, left_ids: set[str], right_ids: set[str]
) -> tuple[set[tuple[str, str]], str, int]:
    """Gold pairs between two catalogs, as ``(left id, right id)``.

    The file is a pairs file (:data:`PAIR_COLUMNS`) with one id of each side; which column
    holds LEFT's ids is the orientation under which more pairs join LEFT to RIGHT.

    Returns:
        ``(pairs, orientation, left out)``: the pairs whose ids both sides hold, a phrase
        naming LEFT's column, and how many pairs were left out.

    Raises:
        GoldError: not a pairs file, or no pair joins the two sides.
    """
    try:
        g = read_table(Path(path))
    except CatalogError as exc:
        raise GoldError(str(exc)) from exc
    cols = next((c for c in PAIR_COLUMNS if set(c) <= set(g.columns)), None)
    if cols is None:
        raise GoldError(
            f"{path}: two catalogs are scored against gold pairs: columns {' / '.join(', '.join(c) for c in PAIR_COLUMNS)}."
        )
    x, y = g[cols[0]].cast(pl.String).to_list(), g[cols[1]].cast(pl.String).to_list()
    forward = sum(a in left_ids and b in right_ids for a, b in zip(x, y))
    backward = sum(b in left_ids and a in right_ids for a, b in zip(x, y))
    pairs = list(zip(x, y)) if forward >= backward else list(zip(y, x))
    gold = {(a, b) for a, b in pairs if a in left_ids and b in right_ids}
    if not gold:
        raise GoldError(f"{path}: none of its pairs joins an id of LEFT with an id of RIGHT; check the gold file.")
    return gold, f"{cols[0] if forward >= backward else cols[1]} is LEFT", len(pairs) - len(gold)
