"""LoFTR's local feature transformer: interleaved self- and cross-attention encoder layers.

Each layer projects queries, keys and values without bias, runs (linear) multi-head attention, merges the
heads (no bias), applies LayerNorm, then an MLP on the concatenation ``[x, message]`` (``2C -> 2C -> C``,
ReLU, no bias) and a second LayerNorm, and adds the result to ``x``. One layer's weights are shared by the
two images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError, InputShapeError
from .linear_attention import ATTENTIONS


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 256
    nhead: int = 8
    layer_names: tuple[str, ...] = ("self", "cross") * 4
    attention: str = "linear"  # "linear" (elu+1) or "full" (softmax)
    # "sequential": a cross layer updates image 0, then image 1 from the *updated* image-0 features (S2LD);
    # "simultaneous": both images are updated from the features before the layer (LoFTR).
    cross_update: str = "sequential"


class EncoderLayer(nn.Module):
    """One attention + MLP layer: ``x (N, L, C)``, ``source (N, S, C)`` -> ``(N, L, C)``."""

    def __init__(self, d_model: int, nhead: int, attention: str = "linear"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ConfigError(f"attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
        if d_model % nhead:
            raise ConfigError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead, self.dim = nhead, d_model // nhead
        self.attend = ATTENTIONS[attention]
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model * 2, d_model * 2, bias=False), nn.ReLU(True), nn.Linear(d_model * 2, d_model, bias=False)
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, source: torch.Tensor, x_mask: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (N, L, C)``, ``source (N, S, C)``, masks ``(N, L)`` / ``(N, S)`` bool (True = valid)."""
        n = x.size(0)
        query = self.q_proj(x).view(n, -1, self.nhead, self.dim)
        key = self.k_proj(source).view(n, -1, self.nhead, self.dim)
        value = self.v_proj(source).view(n, -1, self.nhead, self.dim)
        message = self.attend(query, key, value, q_mask=x_mask, kv_mask=source_mask)
        message = self.norm1(self.merge(message.reshape(n, -1, self.nhead * self.dim)))
        message = self.norm2(self.mlp(torch.cat([x, message], dim=2)))
        return x + message


class LocalFeatureTransformer(nn.Module):
    """A stack of :class:`EncoderLayer` named ``"self"`` or ``"cross"`` (parameters under ``layers.<i>``)."""

    def __init__(self, config: TransformerConfig = TransformerConfig()):
        super().__init__()
        if config.cross_update not in ("sequential", "simultaneous"):
            raise ConfigError(f"cross_update must be 'sequential' or 'simultaneous', got {config.cross_update!r}")
        for name in config.layer_names:
            if name not in ("self", "cross"):
                raise ConfigError(f"layer names must be 'self' or 'cross', got {name!r}")
        self.config = config
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.nhead, config.attention) for _ in config.layer_names
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, mask0: torch.Tensor | None = None,
                mask1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat0 (N, L, C)``, ``feat1 (N, S, C)``, optional masks ``(N, L)``/``(N, S)`` -> updated features."""
        if feat0.size(2) != self.config.d_model or feat1.size(2) != self.config.d_model:
            raise InputShapeError(f"features have {feat0.size(2)}/{feat1.size(2)} channels, the transformer "
                              f"expects {self.config.d_model}")
        sequential = self.config.cross_update == "sequential"
        for layer, name in zip(self.layers, self.config.layer_names, strict=True):
            if name == "self":
                feat0, feat1 = layer(feat0, feat0, mask0, mask0), layer(feat1, feat1, mask1, mask1)
            elif sequential:
                feat0 = layer(feat0, feat1, mask0, mask1)
                feat1 = layer(feat1, feat0, mask1, mask0)
            else:
                feat0, feat1 = layer(feat0, feat1, mask0, mask1), layer(feat1, feat0, mask1, mask0)
        return feat0, feat1
