"""Evaluation: compare match groups, clusters and class predictions with gold labels;
calibrate thresholds."""

from eclip.evaluation.calibrate import Calibration, calibrate, calibrate_methods, read_calibration, threshold_curve
from eclip.evaluation.classification import (
    OperatingPoint,
    at_threshold,
    binary_metrics,
    classification_metrics,
    threshold_for_precision,
)
from eclip.evaluation.gold import binary_gold, load_class_labels, load_gold
from eclip.evaluation.metrics import (
    ClusterMetrics,
    blocking_recall,
    cluster_metrics,
    cluster_metrics_with_noise,
    noise_as_singletons,
)

__all__ = [
    "Calibration",
    "ClusterMetrics",
    "OperatingPoint",
    "at_threshold",
    "binary_gold",
    "binary_metrics",
    "blocking_recall",
    "calibrate",
    "calibrate_methods",
    "classification_metrics",
    "cluster_metrics",
    "cluster_metrics_with_noise",
    "load_class_labels",
    "load_gold",
    "noise_as_singletons",
    "read_calibration",
    "threshold_curve",
    "threshold_for_precision",
]
