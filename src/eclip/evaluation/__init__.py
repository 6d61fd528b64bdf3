"""Evaluation: compare match groups, clusters and class predictions with gold labels;
calibrate thresholds."""

from eclip.evaluation.calibrate import Calibration, calibrate, threshold_curve
from eclip.evaluation.classification import OperatingPoint, at_threshold, binary_metrics, classification_metrics, threshold_for_precision
from eclip.evaluation.gold import load_class_labels, load_gold
from eclip.evaluation.metrics import ClusterMetrics, blocking_recall, cluster_metrics, noise_as_singletons

__all__ = [
    "Calibration",
    "ClusterMetrics",
    "OperatingPoint",
    "at_threshold",
    "binary_metrics",
    "blocking_recall",
    "calibrate",
    "classification_metrics",
    "cluster_metrics",
    "load_class_labels",
    "load_gold",
    "noise_as_singletons",
    "threshold_curve",
    "threshold_for_precision",
]
