"""Transformer building blocks shared by DINOv2 and RoMa's match decoder.

Parameter names follow the official DINOv2 layout (``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) so published checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fused import fast_path


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    Input and output ``(B, N, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Linear -> GELU (exact) -> Linear."""

    def __init__(self, dim: int, hidden: int, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """The SwiGLU feed-forward of DINOv2 ViT-g (``w12``, ``w3``); hidden width rounded as upstream."""

    def __init__(self, dim: int, hidden: int, bias: bool = True):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden, bias=bias)
        self.w3 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the feed-forward as a multiple of ``dim``.
        qkv_bias: bias on the qkv projection (DINOv2: yes; RoMa's decoder: no).
        layer_scale: LayerScale init value, or None for no LayerScale (RoMa's decoder).
        norm_eps: LayerNorm epsilon (DINOv2: 1e-6; RoMa's decoder: torch's default 1e-5).
        ffn: "mlp" or "swiglu".
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_scale: float | None = None,
        norm_eps: float = 1e-5,
        ffn: str = "mlp",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        ffn_class = {"mlp": Mlp, "swiglu": SwiGLU}[ffn]
        self.mlp = ffn_class(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.mlp, Mlp) and _fused_linear_ok(self, x):
            return self._forward_fused(x)
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode CPU inference: the bias (and, without LayerScale, the residual add) in oneDNN's matmul
        epilogue, LayerScale and residual in one ``addcmul``, GELU fused into ``fc1``: two to three fewer
        passes over the tokens per branch, and no weight copies. Same values up to float32 rounding;
        training never comes here."""
        attn, mlp = self.attn, self.mlp
        batch, tokens, dim = x.shape
        h = self.norm1(x)
        qkv = _linear(h, attn.qkv.weight, attn.qkv.bias)
        q, k, v = qkv.reshape(batch, tokens, 3, attn.num_heads, dim // attn.num_heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = _residual(x, a.transpose(1, 2).reshape(batch, tokens, dim), attn.proj, self.ls1)
        h = torch.ops.mkldnn._linear_pointwise(self.norm2(x), mlp.fc1.weight, mlp.fc1.bias, "gelu", [], "none")
        return _residual(x, h, mlp.fc2, self.ls2)


def _residual(x: torch.Tensor, h: torch.Tensor, linear: nn.Linear, scale: nn.Module) -> torch.Tensor:
    """``x + scale(linear(h))`` with the bias and the add fused into the matmul or one addcmul."""
    if isinstance(scale, LayerScale):
        return torch.addcmul(x, _linear(h, linear.weight, linear.bias), scale.gamma)
    if linear.bias is None:
        return x + F.linear(h, linear.weight)
    return torch.ops.mkldnn._linear_pointwise.binary(h, x, linear.weight, linear.bias, "add")


def _fused_linear_ok(module: nn.Module, x: torch.Tensor) -> bool:
    return (fast_path(module, x) and isinstance(module.mlp.act, nn.GELU)
            and module.mlp.act.approximate == "none")


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return F.linear(x, weight)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
