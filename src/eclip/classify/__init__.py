"""Classify: zero-shot labels from names (prompt ensembling, taxonomies level by level), a
linear probe on labelled rows, and the adult-content filter (its concept vectors, base rate
with intervals, and second pass)."""

from eclip.classify.adult import (
    ADULT_CONCEPTS,
    TAXONOMY_FILE,
    adult_margins,
    concept_names,
    concept_vectors,
    general_concepts,
)
from eclip.classify.adult import (
    BOUNDARY as ADULT_BOUNDARY,
)
from eclip.classify.base_rate import (
    ExpectedOperatingPoint,
    ScoreMixture,
    adjust_to_base_rate,
    fit_score_mixture,
    threshold_for_blended_precision,
    threshold_for_expected_precision,
)
from eclip.classify.concepts import load_concept_vectors
from eclip.classify.fewshot import AdultProbe, exemplar_margin, fit_adult_probe, prior_log_odds
from eclip.classify.intervals import BaseRateInterval, FlaggedInterval, base_rate_interval, flagged_interval
from eclip.classify.label_free import LabelFree, label_free, promises
from eclip.classify.labels import LabelsError, Taxonomy, parse_labels
from eclip.classify.probe import LinearProbe, align_probe, combine, fit_probe
from eclip.classify.second_pass import SecondPass, catalog_evidence
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
    "ADULT_BOUNDARY",
    "BaseRateInterval",
    "FlaggedInterval",
    "SecondPass",
    "LabelFree",
    "label_free",
    "promises",
    "base_rate_interval",
    "flagged_interval",
    "load_concept_vectors",
    "catalog_evidence",
    "ADULT_CONCEPTS",
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_TEMPLATES",
    "TAXONOMY_FILE",
    "UNKNOWN",
    "LabelsError",
    "LinearProbe",
    "Predictions",
    "Taxonomy",
    "ExpectedOperatingPoint",
    "ScoreMixture",
    "adult_margins",
    "AdultProbe",
    "adjust_to_base_rate",
    "exemplar_margin",
    "fit_adult_probe",
    "align_probe",
    "classify_taxonomy",
    "combine",
    "concept_names",
    "concept_vectors",
    "fit_score_mixture",
    "general_concepts",
    "ensemble",
    "fit_probe",
    "flat_predictions",
    "label_vectors",
    "parse_labels",
    "predictions_frame",
    "prior_log_odds",
    "prompts",
    "softmax",
    "taxonomy_vectors",
    "threshold_for_blended_precision",
    "threshold_for_expected_precision",
]
