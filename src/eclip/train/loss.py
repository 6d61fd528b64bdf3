"""Contrastive losses: CLIP's symmetric InfoNCE and e-CLIP's multi-positive variant.

* **CLIP** (Radford et al. 2021, sec. 2.3): logits ``s * I @ T.T`` with a learnable
  temperature ``s = exp(logit_scale)`` (clamped to 100); targets are the identity.
* **e-CLIP** (Song et al., CIKM 2022, sec. 3.2): the same product sold by several sellers can
  land in one batch, and plain InfoNCE then pushes true matches apart. Rows that share a
  group key are positives of each other; the targets are the row-normalised multi-positive
  matrix ``Y[i, j] = [key_i == key_j] / #{k : key_k == key_i}``, and each direction is a
  soft-target cross-entropy. With all keys distinct this is exactly the CLIP loss.

Distributed training gathers features across ranks as open_clip's ``loss.py`` does:
``gather_with_grad`` (``torch.distributed.nn.all_gather``, gradients flow back to every rank)
and ``local_loss`` (each rank scores only its own rows against all columns).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: CLIP's cap on the learned temperature (logit_scale = log 100).
MAX_LOGIT_SCALE = 100.0


def multi_positive_targets(keys: torch.Tensor) -> torch.Tensor:
    """Row-normalised multi-positive target matrix.

    Args:
        keys: ``(n,)`` int64 group keys; equal keys mark the same product.

    Returns:
        ``(n, n)`` float32; row ``i`` is uniform over the rows sharing ``i``'s key (itself
        included), so every row sums to 1.
    """
    same = (keys[:, None] == keys[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def gather_features(
    image: torch.Tensor, text: torch.Tensor, keys: torch.Tensor, rank: int, world_size: int, gather_with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate every rank's ``(b, d)`` features (and ``(b,)`` keys), rank order.

    With ``gather_with_grad`` the gather is differentiable; otherwise the local slice is put
    back so that this rank's own rows keep their gradient (open_clip's scheme).
    """
    import torch.distributed as dist

    all_keys = [torch.zeros_like(keys) for _ in range(world_size)]
    dist.all_gather(all_keys, keys)
    if gather_with_grad:
        import torch.distributed.nn as dist_nn

        return torch.cat(dist_nn.all_gather(image)), torch.cat(dist_nn.all_gather(text)), torch.cat(all_keys)
    imgs = [torch.zeros_like(image) for _ in range(world_size)]
    txts = [torch.zeros_like(text) for _ in range(world_size)]
    dist.all_gather(imgs, image)
    dist.all_gather(txts, text)
    imgs[rank], txts[rank] = image, text
    return torch.cat(imgs), torch.cat(txts), torch.cat(all_keys)


class ContrastiveLoss(nn.Module):
    """Symmetric image-text InfoNCE; e-CLIP multi-positive targets when ``multi_positive``.

    Args:
        multi_positive: use group keys for targets (e-CLIP); otherwise the identity (CLIP).
        rank, world_size: this process's place in a distributed job.
        local_loss: score only this rank's rows against the gathered columns.
        gather_with_grad: differentiable all-gather.

    Call with ``image`` and ``text`` ``(b, d)`` L2-normalised features, the scalar
    ``logit_scale`` parameter (log of the temperature's inverse) and ``keys`` ``(b,)`` int64;
    returns the scalar loss (mean of the image->text and text->image cross-entropies).
    """

    def __init__(
        self,
        multi_positive: bool = True,
        rank: int = 0,
        world_size: int = 1,
        local_loss: bool = False,
        gather_with_grad: bool = True,
    ) -> None:
        super().__init__()
        self.multi_positive = multi_positive
        self.rank, self.world_size = rank, world_size
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, keys: torch.Tensor
    ) -> torch.Tensor:
        scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        b = image.shape[0]
        if self.world_size > 1:
            all_img, all_txt, all_keys = gather_features(
                image, text, keys, self.rank, self.world_size, self.gather_with_grad
            )
            if self.local_loss:
                rows = slice(self.rank * b, (self.rank + 1) * b)
                logits_i = scale * image @ all_txt.T
                logits_t = scale * text @ all_img.T
                row_keys = all_keys[rows]
            else:
                logits_i = scale * all_img @ all_txt.T
                logits_t = logits_i.T
                row_keys = all_keys
        else:
            logits_i = scale * image @ text.T
            logits_t = logits_i.T
            all_keys = row_keys = keys
        if self.multi_positive:
            same = (row_keys[:, None] == all_keys[None, :]).float()
            targets = same / same.sum(dim=1, keepdim=True)
        else:
            offset = self.rank * b if (self.world_size > 1 and self.local_loss) else 0
            targets = F.one_hot(
                torch.arange(logits_i.shape[0], device=image.device) + offset, logits_i.shape[1]
            ).float()
        loss_i = -(targets * F.log_softmax(logits_i, dim=1)).sum(dim=1).mean()
        loss_t = -(targets * F.log_softmax(logits_t, dim=1)).sum(dim=1).mean()
        return (loss_i + loss_t) / 2
