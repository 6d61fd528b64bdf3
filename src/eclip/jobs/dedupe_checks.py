"""What ``dedupe`` checks in its own groups before it writes them: groups no product has,
and groups that imply far more (or fewer) matches than the match model expects."""

from __future__ import annotations

import numpy as np

from eclip.matcher import oversized_groups, size_bound
from eclip.progress import console


def warn_oversized(
    ids: list[str],
    group_id: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    accepted: np.ndarray,
    method: str,
) -> list[str]:
    """Warn (and return the warnings) when groups pass :func:`eclip.matcher.size_bound`:
    threshold-and-components grouping chains look-alikes into groups no product has."""
    bound = size_bound(len(ids))
    big = oversized_groups(group_id, a, b, score, bound, accepted)
    if not big:
        return []
    rows = sum(g["size"] for g in big)
    pairs = sum(g["implied_pairs"] for g in big)
    first = big[0]
    weakest = "; ".join(f"{ids[x]} ~ {ids[y]} ({s:.3f})" for x, y, s in first["weakest"])
    safer = (
        "--method average or auto keeps groups from chaining"
        if method == "components"
        else "raise --threshold or review them (eclip report)"
    )
    text = (
        f"{len(big)} group(s) exceed {bound:,} rows (largest {first['size']:,}, group {first['group_id']}); together they hold "
        f"{rows:,} rows and imply {pairs:,} matched pairs. Its weakest links: {weakest}. {safer}."
    )
    console.print(f"[yellow]warning: {text}[/]")
    return [text]


def match_rate(
    n: int, group_id: np.ndarray, learned: dict, method: str, a: np.ndarray, b: np.ndarray, probability: np.ndarray
) -> tuple[dict[str, float | None], list[str]]:
    """Matches per row the match model expects beside those the groups imply (each row is
    matched to every other row of its group), and a warning when they disagree by more than
    a factor of 2 (and 0.1 per row): the groups then say something the model does not
    believe.

    The model expects ``sum of a row's candidates' match probabilities`` matches of each row;
    under ``mutual`` a row has one match at most, so there a row expects ``min(1, that)``
    (both are in the returned figures).

    Args:
        n: rows. group_id: ``(n,)`` group of each row. learned: the settings' ``learned``.
        method: the grouping method used. a, b, probability: ``(p,)`` candidate pairs and
            their match probabilities (NaN counts 0).

    Returns:
        ``({"expected_matches_per_row", "expected_matches_per_row_one_to_one",
        "predicted_matches_per_row"}, warnings)``.
    """
    _, counts = np.unique(group_id, return_counts=True)
    predicted = float((counts * (counts - 1)).sum() / max(n, 1))
    p = np.nan_to_num(np.asarray(probability, np.float64))
    per_row = np.bincount(a, p, n) + np.bincount(b, p, n)
    one_to_one = float(np.minimum(per_row, 1.0).mean()) if n else 0.0
    rate = {
        "expected_matches_per_row": learned.get("expected_matches_per_row"),
        "expected_matches_per_row_one_to_one": round(one_to_one, 4) if "mixture" in learned else None,
        "predicted_matches_per_row": round(predicted, 4),
    }
    expected = rate["expected_matches_per_row_one_to_one" if method == "mutual" else "expected_matches_per_row"]
    if expected is None or abs(predicted - expected) <= 0.1 or expected / 2 <= predicted <= 2 * expected:
        return rate, []
    text = f"the groups imply {predicted:.2f} matches per row, the match model expects {expected:.2f}: " + (
        "groups hold rows the model does not believe match (chaining?); raise --threshold or try --method mutual."
        if predicted > expected
        else "the grouping keeps fewer matches than the model expects; try --method average or review (eclip report)."
    )
    console.print(f"[yellow]warning: {text}[/]")
    return rate, [text]
