"""Reviewer labels on candidate pairs (``label.csv``) and how pairs are chosen for review.

A label file has one row per pair: ``id_a, id_b, title_a, title_b, decision, chosen_by,
match_probability`` and the pair's signals. ``decision`` is ``same``, ``different`` or
``unsure``; an empty decision is a pair still waiting for the reviewer.

Pairs are chosen in batches that do not depend on the batch size (issue 33: one batch of
200 must teach as much as ten of 20):

* **Uncertain pairs** (uncertainty sampling: Lewis and Gale, "A sequential algorithm for
  training text classifiers", SIGIR 1994): the pairs whose current match probability is
  nearest 0.5, where a label teaches the model most, kept **diverse**: no two pairs of a
  batch share a row, or a group of the run, while other pairs remain (diverse mini-batch
  active learning, Zhdanov, arXiv 1901.05954, 2019: a large batch of the top uncertain
  pairs is otherwise one product's near-twins over and over).
* **Random pairs**, :data:`RANDOM_SHARE` of every batch, drawn at random within strata of
  the match probability (:data:`PROBABILITY_STRATA`, the same number from each): a uniform
  draw on a catalog where 3 % of the candidates match brings one or two matches per batch,
  too few to check a model on; a stratified draw brings both classes at every batch size.

The labels are no simple random sample of the candidate pairs, so what is estimated from
them is weighted back to the candidate population by post-stratification over the same
strata (:func:`poststratified_weights`).
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
#: Share of each batch drawn at random (stratified by match probability) from the candidate pairs.
RANDOM_SHARE = 0.5
#: Edges of the match-probability strata of the random draw and of the post-stratified weights.
PROBABILITY_STRATA = (0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)
#: Post-stratification weights are trimmed at this multiple of their median
#: (:func:`poststratified_weights`).
WEIGHT_TRIM = 3.5
#: Uncertain candidates scanned per pair wanted before diversity is given up.
SCAN_PER_PAIR = 50


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
        decided = np.isin(self.decision, ("same", "different"))
        return Constraints.from_answers(self.a[decided], self.b[decided], self.decision[decided] == "same")


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


def probability_stratum(probability: np.ndarray) -> np.ndarray:
    """``(p,)`` int64 stratum of each match probability in :data:`PROBABILITY_STRATA`
    (NaN counts as 0.5)."""
    p = np.nan_to_num(np.asarray(probability, np.float64), nan=0.5)
    edges = np.asarray(PROBABILITY_STRATA[1:-1])
    return np.searchsorted(edges, p, side="right").astype(np.int64)


def poststratified_weights(
    probability: np.ndarray, labelled: np.ndarray, trim: float | None = WEIGHT_TRIM
) -> np.ndarray:
    """Post-stratification weights of labelled candidate pairs: how many candidate pairs each
    label stands for, ``N_h / n_h`` in its stratum ``h`` of :data:`PROBABILITY_STRATA` (Särndal,
    Swensson and Wretman, *Model Assisted Survey Sampling*, 1992, section 7.6).

    Args:
        probability: ``(p,)`` the run's label-free match probability of every candidate pair
            (fixed for the run, so every labelling history gets the same strata).
        labelled: ``(m,)`` int64 indices of the labelled pairs among the candidates.
        trim: weights above ``trim`` times their median are cut to it (weight trimming,
            Potter, "A study of procedures to identify and trim extreme sampling weights",
            1990): a few labels in the crowded low-probability stratum would otherwise stand
            for thousands of pairs each, and one of them decide every estimate. ``None``:
            untrimmed.

    Returns:
        ``(m,)`` float64 weights; untrimmed, they sum to the number of candidate pairs in
        the strata the labels reach.
    """
    h_all = probability_stratum(probability)
    strata = len(PROBABILITY_STRATA) - 1
    population = np.bincount(h_all, minlength=strata)
    h = h_all[np.asarray(labelled, np.int64)]
    sample = np.bincount(h, minlength=strata)
    w = (population[h] / np.maximum(sample[h], 1)).astype(np.float64)
    return w if trim is None or not len(w) else np.minimum(w, trim * float(np.median(w)))


def _diverse(order: np.ndarray, k: int, keys: tuple[np.ndarray, np.ndarray] | None, used: set[int]) -> list[int]:
    """The first ``k`` of ``order`` (candidate-pair indices) whose two keys (rows or groups)
    are not in ``used`` (updated), then, when too few are, the next ones regardless."""
    if k <= 0:
        return []
    if keys is None:
        return order[:k].tolist()
    picked: list[int] = []
    for i in order[: SCAN_PER_PAIR * k + 1000].tolist():
        x, y = int(keys[0][i]), int(keys[1][i])
        if x in used or y in used:
            continue
        picked.append(i)
        used.update((x, y))
        if len(picked) == k:
            return picked
    taken = set(picked)
    return picked + [i for i in order[: k + len(picked)].tolist() if i not in taken][: k - len(picked)]


def choose_pairs(
    probability: np.ndarray,
    exclude: np.ndarray,
    batch: int,
    seed: int = 0,
    random_share: float = RANDOM_SHARE,
    keys: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Pairs to show a reviewer next (see the module docstring).

    Args:
        probability: ``(p,)`` current match probability of every candidate pair (NaN counts
            as 0.5: nothing is known).
        exclude: ``(p,)`` bool, pairs already labelled or waiting.
        batch: pairs wanted.
        random_share: share of the batch drawn at random, stratified by ``probability``
            (for a batch of one, the chance that it is a random pair).
        keys: ``((p,), (p,))`` int64 what two pairs of a batch should not share, per side of
            each pair: the rows' groups in the run (or the rows themselves); ``None``: no
            diversity.

    Returns:
        ``(indices into the candidate pairs, why each was chosen: "uncertain" | "random")``;
        fewer than ``batch`` when fewer pairs remain.
    """
    rng = np.random.default_rng(seed)
    avail = np.flatnonzero(~np.asarray(exclude, bool))
    batch = min(batch, len(avail))
    want = batch * random_share
    n_random = int(np.floor(want) + (rng.random() < want - np.floor(want)))
    h = probability_stratum(np.asarray(probability)[avail])
    strata = len(PROBABILITY_STRATA) - 1
    counts = np.bincount(h, minlength=strata)
    share = (counts > 0) / max(int((counts > 0).sum()), 1)
    per = np.floor(n_random * share).astype(np.int64)
    left = n_random - int(per.sum())
    frac = n_random * share - per
    if left > 0 and frac.sum() > 0:
        per[rng.choice(strata, left, replace=False, p=frac / frac.sum())] += 1
    used: set[int] = set()
    randoms: list[int] = []
    for s in np.flatnonzero(per):
        members = avail[h == s]
        randoms += _diverse(members[rng.permutation(len(members))], int(min(per[s], len(members))), keys, used)
    p = np.nan_to_num(np.asarray(probability, np.float64)[avail], nan=0.5)
    order = avail[np.lexsort((rng.random(len(avail)), np.abs(p - 0.5)))]  # nearest 0.5 first, ties at random
    order = order[~np.isin(order, randoms)]
    uncertain = _diverse(order, batch - len(randoms), keys, used)
    idx = np.array(uncertain + randoms, dtype=np.int64)
    return idx, ["uncertain"] * len(uncertain) + ["random"] * len(randoms)
