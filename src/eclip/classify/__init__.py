"""Classify: zero-shot labels from names (prompt ensembling, taxonomies level by level), a
linear probe on labelled rows, and the adult-content filter."""

from eclip.classify.adult import ADULT_CONCEPTS, DEFAULT_THRESHOLD, GENERAL_CONCEPTS, LOGIT_SCALE as ADULT_LOGIT_SCALE, adult_probability, adult_scores, concept_vectors
from eclip.classify.labels import LabelsError, Taxonomy, parse_labels
from eclip.classify.probe import LinearProbe, align_probe, combine, fit_probe
from eclip.classify.zeroshot import (
    DEFAULT_LOGIT_SCALE,
    DEFAULT_TEMPLATES,
    UNKNOWN,
    Predictions,
    classify_taxonomy,
    ensemble,
    flat_predictions,
    label_vectors,
    predictions_frame,
    prompts,
    softmax,
    taxonomy_vectors,
)

__all__ = [
    "ADULT_CONCEPTS",
    "ADULT_LOGIT_SCALE",
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_TEMPLATES",
    "DEFAULT_THRESHOLD",
    "GENERAL_CONCEPTS",
    "UNKNOWN",
    "LabelsError",
    "LinearProbe",
    "Predictions",
    "Taxonomy",
    "adult_probability",
    "adult_scores",
    "align_probe",
    "classify_taxonomy",
    "combine",
    "concept_vectors",
    "ensemble",
    "fit_probe",
    "flat_predictions",
    "label_vectors",
    "parse_labels",
    "predictions_frame",
    "prompts",
    "softmax",
    "taxonomy_vectors",
]
