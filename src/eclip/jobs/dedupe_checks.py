"""What ``dedupe`` checks in its own groups before it writes them, and says: groups no
product has, and groups that imply far more (or fewer) matches than the match model expects
(:func:`eclip.matcher.grouping.match_rate`)."""

from __future__ import annotations

import numpy as np

from eclip.matcher import oversized_groups, size_bound
from eclip.matcher.grouping import match_rate
from eclip.matcher.mixture import MatchSettings
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


def warn_match_rate(
    n: int, group_id: np.ndarray, settings: MatchSettings, a: np.ndarray, b: np.ndarray
) -> tuple[dict[str, float | None], list[str]]:
    """:func:`eclip.matcher.grouping.match_rate` of the grouping under ``settings``, its
    warning printed: ``(figures, [warning] or [])``."""
    expected = settings.learned.get("expected_matches_per_row")
    rate, warning = match_rate(n, group_id, expected, settings.method, a, b, settings.probability)
    if warning is None:
        return rate, []
    console.print(f"[yellow]warning: {warning}[/]")
    return rate, [warning]
