"""LoFTR's 2D sine positional encoding, *with* its ``div_term`` operator-precedence quirk.

LoFTR computes the frequency term as ``exp(arange(0, C/2, 2) * (-log(10000) / C // 2))``. Python reads the
exponent as ``(-log(10000) / C) // 2``, a floor division of a small negative number, which is ``-1.0`` for
every ``C > 18``: the frequencies are ``exp(-k)`` for ``k = 0, 2, 4, ...`` instead of ``10000^(-2k/C)``.
Published LoFTR-family weights (S2LD included) were trained with this encoding, so it is the default;
``fixed=True`` gives the intended ``(-log(10000) / (C // 2))`` (LoFTR's later ``temp_bug_fix``).

Channels ``4i, 4i+1, 4i+2, 4i+3`` hold ``sin(x f_i), cos(x f_i), sin(y f_i), cos(y f_i)`` with 1-based
positions ``x, y`` (LoFTR's cumsum of ones).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import InputShapeError


def sine_encoding(d_model: int, max_shape: tuple[int, int] = (256, 256), fixed: bool = False) -> torch.Tensor:
    """The ``(1, d_model, H_max, W_max)`` float32 encoding table."""
    pe = torch.zeros((d_model, *max_shape))
    y_position = torch.ones(max_shape).cumsum(0).float().unsqueeze(0)
    x_position = torch.ones(max_shape).cumsum(1).float().unsqueeze(0)
    exponent = -math.log(10000.0) / (d_model // 2) if fixed else (-math.log(10000.0) / d_model) // 2
    div_term = torch.exp(torch.arange(0, d_model // 2, 2).float() * exponent)[:, None, None]
    pe[0::4] = torch.sin(x_position * div_term)
    pe[1::4] = torch.cos(x_position * div_term)
    pe[2::4] = torch.sin(y_position * div_term)
    pe[3::4] = torch.cos(y_position * div_term)
    return pe.unsqueeze(0)


class PositionEncodingSine(nn.Module):
    """Adds the encoding to a ``(N, C, H, W)`` feature map (``H, W <= max_shape``; 256 cells = 2048 px at 1/8).

    The table is a non-persistent buffer: it is not part of the state dict.
    """

    def __init__(self, d_model: int, max_shape: tuple[int, int] = (256, 256), fixed: bool = False):
        super().__init__()
        self.register_buffer("pe", sine_encoding(d_model, max_shape, fixed), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h > self.pe.shape[2] or w > self.pe.shape[3]:
            raise InputShapeError(f"feature map {h}x{w} exceeds the positional encoding's "
                                  f"{self.pe.shape[2]}x{self.pe.shape[3]} cells; use a smaller resize")
        return x + self.pe[:, :, :h, :w]
