"""Train: e-CLIP contrastive training of image and text towers on a catalog's own listings."""

from eclip.train.loop import LOSSES, TrainConfig, lr_at, train
from eclip.train.loss import ContrastiveLoss, multi_positive_targets

__all__ = ["LOSSES", "ContrastiveLoss", "TrainConfig", "lr_at", "multi_positive_targets", "train"]
