"""Multi-head attention kernels used by LoFTR-family transformers (no parameters).

``linear_attention`` is the elu+1 kernel of Katharopoulos et al. ("Transformers are RNNs") as LoFTR uses
it: values are divided by the sequence length before the key-value product and the result multiplied back
(an fp16 overflow guard that upstream keeps in fp32 too), ``eps = 1e-6`` in the normaliser, padded
positions zeroed in the queries, keys and values. ``full_attention`` is scaled dot-product attention with
the same mask convention. Both take ``(N, L, H, D)`` queries and ``(N, S, H, D)`` keys/values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def linear_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     q_mask: torch.Tensor | None = None, kv_mask: torch.Tensor | None = None,
                     eps: float = 1e-6) -> torch.Tensor:
    """elu+1 linear attention.

    Args:
        queries: ``(N, L, H, D)``; keys, values: ``(N, S, H, D)``.
        q_mask: ``(N, L)`` bool, True = valid; kv_mask: ``(N, S)`` bool.
    Returns:
        ``(N, L, H, D)`` messages.
    """
    q = elu_feature_map(queries)
    k = elu_feature_map(keys)
    if q_mask is not None:
        q = q * q_mask[:, :, None, None]
    if kv_mask is not None:
        k = k * kv_mask[:, :, None, None]
        values = values * kv_mask[:, :, None, None]
    length = values.size(1)
    values = values / length
    kv = torch.einsum("nshd,nshv->nhdv", k, values)
    z = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + eps)
    return torch.einsum("nlhd,nhdv,nlh->nlhv", q, kv, z) * length


def full_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   q_mask: torch.Tensor | None = None, kv_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention with temperature ``1 / sqrt(D)``; same shapes as :func:`linear_attention`.

    As in LoFTR, masked pairs are set to ``-inf`` only when both masks are given (a fully masked query row
    then yields NaN, which only happens on padded positions).
    """
    qk = torch.einsum("nlhd,nshd->nlsh", queries, keys)
    if kv_mask is not None and q_mask is not None:
        qk = qk.masked_fill(~(q_mask[:, :, None, None] & kv_mask[:, None, :, None]), float("-inf"))
    attention = torch.softmax((1.0 / queries.size(3) ** 0.5) * qk, dim=2)
    return torch.einsum("nlsh,nshd->nlhd", attention, values)


ATTENTIONS = {"linear": linear_attention, "full": full_attention}
