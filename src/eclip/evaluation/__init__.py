"""Evaluation: compare match groups with gold labels; calibrate the match threshold."""

from eclip.evaluation.calibrate import Calibration, calibrate, threshold_curve
from eclip.evaluation.gold import load_gold
from eclip.evaluation.metrics import ClusterMetrics, blocking_recall, cluster_metrics, noise_as_singletons

__all__ = ["Calibration", "ClusterMetrics", "blocking_recall", "calibrate", "cluster_metrics", "load_gold", "noise_as_singletons", "threshold_curve"]
