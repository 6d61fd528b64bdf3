"""Reviewer labels on candidate pairs (``label.csv``) and how pairs are chosen for review.

A label file has one row per pair: ``id_a, id_b, title_a, title_b, decision, chosen_by,
match_probability`` and the pair's signals. ``decision`` is ``same``, ``different`` or
``unsure``; an empty decision is a pair still waiting for the reviewer.

Pairs are chosen by uncertainty sampling (Lewis and Gale, "A sequential algorithm for
training text classifiers", SIGIR 1994): the pairs whose current match probability is
nearest 0.5, where a label teaches the model most. A share of each batch is drawn at random
from the candidate pairs instead, so that the labels also cover the easy pairs and the
model's probabilities stay calibrated over the whole range; the ``dedupe`` library mixes
its uncertain pairs with random ones the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from eclip.errors import CatalogError
from eclip.matcher.constraints import Constraints, read_decisions_csv

DECISIONS = ("same", "different", "unsure")
#: Keys of the interactive loop, and the decision each stands for.
KEYS = {"y": "same", "n": "different", "u": "unsure"}
LABEL_COLUMNS = ("id_a", "id_b", "title_a", "title_b", "decision", "chosen_by", "match_probability")
#: Share of each batch drawn at random from the candidate pairs.
RANDOM_SHARE = 0.25


def pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(p,)`` int64 order-free key of the row-position pairs ``(a, b)``."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return lo * (1 << 31) + hi


@dataclass(frozen=True)
class Labels:
    """A label file's pairs, as catalog row positions.

    Attributes:
        a, b: ``(m,)`` int64 row positions. decision: ``(m,)`` str, ``""`` for pending.
        table: the file as read (every column as strings).
    """

    a: np.ndarray
    b: np.ndarray
    decision: np.ndarray
    table: pl.DataFrame

    @property
    def answered(self) -> np.ndarray:
        """``(m,)`` bool: the pairs with a decision (unsure included)."""
        return self.decision != ""

    def counts(self) -> dict[str, int]:
        """How many pairs have each decision, and how many wait for one."""
        out = {d: int((self.decision == d).sum()) for d in DECISIONS}
        out["pending"] = int((self.decision == "").sum())
        return out

    def constraints(self) -> Constraints:
        """``same`` pairs as must-links, ``different`` pairs as cannot-links."""
        same, diff = self.decision == "same", self.decision == "different"
        return Constraints(self.a[same], self.b[same], self.a[diff], self.b[diff])


def read_labels(path: str | Path, ids: list[str]) -> Labels:
    """Read a label file against a catalog's ids.

    Args:
        path: CSV with at least ``id_a, id_b, decision``.
        ids: the catalog's ids, in row order.

    Raises:
        CatalogError: missing or unreadable file, missing columns, an id not in the catalog,
            a decision other than same / different / unsure, a pair labelled twice with
            different decisions; the message names the file, row (1-based, header
            excluded) and column.
    """
    p = Path(path)
    df = read_decisions_csv(p, ("id_a", "id_b", "decision"), "label file", "eclip label writes one")
    pos = {x: i for i, x in enumerate(ids)}
    a = np.empty(len(df), dtype=np.int64)
    b = np.empty(len(df), dtype=np.int64)
    decision = np.empty(len(df), dtype=object)
    for r, (x, y, d) in enumerate(zip(df["id_a"].to_list(), df["id_b"].to_list(), df["decision"].to_list())):
        for col, v, arr in (("id_a", x, a), ("id_b", y, b)):
            if v is None or v not in pos:
                raise CatalogError(
                    f"{p}, row {r + 1}, column {col}: {v!r} is not an id of this run's catalog; the file was written for another catalog, or the id was edited."
                )
            arr[r] = pos[v]
        if a[r] == b[r]:
            raise CatalogError(f"{p}, row {r + 1}: id_a and id_b are the same row {x!r}.")
        d = (d or "").strip().lower()
        if d not in (*DECISIONS, ""):
            raise CatalogError(
                f"{p}, row {r + 1}, column decision: {d!r} is not a decision; write same, different or unsure (or leave it empty for later)."
            )
        decision[r] = d
    decision = decision.astype(str)
    key = pair_key(a, b)
    seen: dict[int, tuple[int, str]] = {}
    for r, (k, d) in enumerate(zip(key.tolist(), decision.tolist())):
        if k in seen and d and seen[k][1] and d != seen[k][1]:
            raise CatalogError(
                f"{p}, rows {seen[k][0] + 1} and {r + 1}: the pair {ids[a[r]]!r} / {ids[b[r]]!r} is labelled both {seen[k][1]} and {d}."
            )
        if k not in seen or d:
            seen[k] = (r, d)
    return Labels(a, b, decision, df)


def choose_pairs(
    probability: np.ndarray, exclude: np.ndarray, batch: int, seed: int = 0, random_share: float = RANDOM_SHARE
) -> tuple[np.ndarray, list[str]]:
    """Pairs to show a reviewer next.

    Args:
        probability: ``(p,)`` current match probability of every candidate pair (NaN counts
            as 0.5: nothing is known).
        exclude: ``(p,)`` bool, pairs already labelled or waiting.
        batch: pairs wanted.
        random_share: share of the batch drawn uniformly from the remaining pairs.

    Returns:
        ``(indices into the candidate pairs, why each was chosen: "uncertain" | "random")``;
        fewer than ``batch`` when fewer pairs remain.
    """
    rng = np.random.default_rng(seed)
    avail = np.flatnonzero(~np.asarray(exclude, bool))
    batch = min(batch, len(avail))
    n_random = int(round(batch * random_share)) if batch > 1 else 0
    p = np.nan_to_num(np.asarray(probability, np.float64)[avail], nan=0.5)
    order = np.lexsort((rng.random(len(avail)), np.abs(p - 0.5)))  # nearest 0.5 first, ties at random
    uncertain = avail[order[: batch - n_random]]
    rest = np.setdiff1d(avail, uncertain)
    randoms = rng.choice(rest, min(n_random, len(rest)), replace=False) if n_random else np.zeros(0, np.int64)
    return np.concatenate([uncertain, randoms]).astype(np.int64), ["uncertain"] * len(uncertain) + ["random"] * len(
        randoms
    )
