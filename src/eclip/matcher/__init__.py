"""Matcher: candidate pairs, per-pair signals and their combined score, match groups."""

from eclip.matcher.candidates import code_block_pairs, knn_pairs, merge_candidates, union_candidates
from eclip.matcher.constraints import Constraints, read_review
from eclip.matcher.frames import cohesion_summary, groups_frame, incremental_groups_frame, oversized_groups, size_bound
from eclip.matcher.grouping import DEFAULT_METHOD, DEFAULT_THRESHOLD, METHODS, Grouping, GroupingMethod, group
from eclip.matcher.signals import (
    ModalityThresholds,
    ScoreWeights,
    code_similarity,
    combine_modalities,
    cosine_pairs,
    passing_counts,
    passing_signals,
    score_pairs,
)

#: Signals that propose and accept matches.
SIGNALS = ("text", "image", "fused", "phash")

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "METHODS",
    "GroupingMethod",
    "SIGNALS",
    "Constraints",
    "Grouping",
    "ModalityThresholds",
    "ScoreWeights",
    "code_block_pairs",
    "cohesion_summary",
    "code_similarity",
    "combine_modalities",
    "cosine_pairs",
    "group",
    "groups_frame",
    "incremental_groups_frame",
    "knn_pairs",
    "merge_candidates",
    "oversized_groups",
    "passing_counts",
    "passing_signals",
    "read_review",
    "union_candidates",
    "score_pairs",
    "size_bound",
]
