"""Matcher: candidate pairs, per-pair signals and their combined score, match groups."""

from eclip.matcher.candidates import code_block_pairs, knn_pairs, merge_candidates
from eclip.matcher.grouping import METHODS, Grouping, group
from eclip.matcher.signals import ScoreWeights, code_similarity, score_pairs

__all__ = [
    "METHODS",
    "Grouping",
    "ScoreWeights",
    "code_block_pairs",
    "code_similarity",
    "group",
    "knn_pairs",
    "merge_candidates",
    "score_pairs",
]
