"""RoMa's Transformer match decoder (``embedding_decoder``): anchor classification over B's coarse grid."""

from __future__ import annotations

import torch
from torch import nn

from ...backbones.layers import Block
from ...conventions import normalized_grid


class MatchDecoder(nn.Module):
    """Self-attention over A's coarse tokens ``cat(gp_posterior, features_A)``, then a linear head.

    ``forward(gp_posterior, features)``: both ``(B, C, h, w)`` -> anchor logits ``(B, anchors^2, h, w)``
    and certainty logit ``(B, 1, h, w)``. Keys: ``blocks.{i}``, ``to_out`` (as published).
    """

    def __init__(self, dim: int = 1024, depth: int = 5, num_heads: int = 8, anchors: int = 64):
        super().__init__()
        # published: qkv without bias, no LayerScale, LayerNorm eps 1e-5, no positional encoding
        self.blocks = nn.Sequential(*(Block(dim, num_heads, 4.0, qkv_bias=False) for _ in range(depth)))
        self.to_out = nn.Linear(dim, anchors**2 + 1)
        self.anchors = anchors

    def forward(self, gp_posterior: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat((gp_posterior, features), dim=1)
        b, c, h, w = x.shape
        out = self.to_out(self.blocks(x.reshape(b, c, h * w).permute(0, 2, 1)))
        out = out.permute(0, 2, 1).reshape(b, -1, h, w)
        return out[:, :-1], out[:, -1:]


def anchor_grid(anchors: int, device=None) -> torch.Tensor:
    """Anchor ``k`` sits at the centre of cell ``(k % anchors, k // anchors)`` of B: ``(anchors^2, 2)``."""
    return normalized_grid(anchors, anchors, device=device).reshape(-1, 2)


def anchor_logits_to_flow(logits: torch.Tensor) -> torch.Tensor:
    """Anchor logits ``(B, K, h, w)`` -> coordinates in B ``(B, h, w, 2)`` (romatch ``cls_to_flow_refine``).

    The softmax-weighted mean over the mode and its four neighbours ``mode -+ 1``, ``mode -+ res``.
    Quirks of the published code that the weights were trained with are kept: the +-1 neighbours wrap
    across row ends, and indices clamped at the grid ends count the same anchor twice.
    """
    b, k, h, w = logits.shape
    res = round(k**0.5)
    grid = anchor_grid(res, device=logits.device)
    probs = logits.softmax(dim=1)
    mode = probs.max(dim=1).indices
    index = torch.stack((mode - 1, mode, mode + 1, mode - res, mode + res), dim=1).clamp(0, k - 1).long()
    neighbours = torch.gather(probs, dim=1, index=index)[..., None]
    flow = sum(neighbours[:, i] * grid[index[:, i]] for i in range(5))
    return flow / neighbours.sum(dim=1)
