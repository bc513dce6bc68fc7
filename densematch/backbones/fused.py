"""Inference-only CPU fast path for ``Conv2d -> BatchNorm2d [-> ReLU]``: BatchNorm folded into the conv,
ReLU fused into oneDNN's convolution, channels-last activations.

Used by RoMa's VGG19-BN, projections and refiners. It runs only when :func:`fast_path` says so (eval
mode, ``torch.inference_mode``, CPU, float32, oneDNN available); training and any call where autograd
is possible keep the plain conv -> BatchNorm -> ReLU modules. The folded tensors are cached outside the
state dict (keys unchanged) and recomputed whenever a conv / BatchNorm tensor changes (new storage or
in-place update, e.g. ``load_state_dict`` or ``.to()``). Outputs equal the unfused modules up to float32
rounding (~1e-6 relative).

Why: on CPU, NCHW depthwise 5x5 convs run 2-3x and 1x1 convs 1.3-4x slower in oneDNN than the same
convs on channels-last tensors, and every separate BatchNorm / ReLU is one more pass over memory.
"""

from __future__ import annotations

import torch
from torch import nn

# oneDNN's fused kernels are private torch ops (present in torch 2.x builds with oneDNN); without them every
# caller takes its plain modules (same values up to rounding).
HAS_ONEDNN_FUSED = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
                    and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def fast_path(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` may use the folded channels-last kernels for input ``x``."""
    return (HAS_ONEDNN_FUSED and not module.training and torch.is_inference_mode_enabled()
            and x.device.type == "cpu" and x.dtype == torch.float32)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def folded(conv: nn.Conv2d, norm: nn.BatchNorm2d | None,
           memory_format: torch.memory_format = torch.channels_last) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of ``norm(conv(x))`` as one conv (``norm`` in eval mode), cached on ``conv``; the
    weight in ``memory_format`` (channels-last for :func:`conv_bn`)."""
    tensors = [conv.weight, conv.bias]
    if norm is not None:
        tensors += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
    present = [t for t in tensors if t is not None]
    if any(t.is_inference() for t in present):  # no version counter: never cache
        key = None
    else:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) if t is not None else None for t in tensors)
        key += ((norm.eps,) if norm is not None else ()) + (memory_format,)
    cached = conv.__dict__.get("_fused_cache")
    if key is None or cached is None or cached[0] != key:
        with torch.no_grad():
            weight = conv.weight
            bias = conv.bias if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0])
            if norm is not None:
                scale = (norm.running_var + norm.eps).rsqrt()
                if norm.weight is not None:
                    scale = scale * norm.weight
                weight = weight * scale[:, None, None, None]
                bias = (bias - norm.running_mean) * scale
                if norm.bias is not None:
                    bias = bias + norm.bias
            weight = weight.contiguous(memory_format=memory_format)
            bias = bias.contiguous()
        cached = (key, weight, bias)
        conv.__dict__["_fused_cache"] = cached
    return cached[1], cached[2]


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, norm: nn.BatchNorm2d | None = None, relu: bool = False):
    """``[relu](norm(conv(x)))`` with the folded weights, channels-last in and out (see :func:`fast_path`)."""
    weight, bias = folded(conv, norm)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        out = conv._conv_forward(channels_last(x), weight, bias)
        return out.relu_() if relu else out
    return torch.ops.mkldnn._convolution_pointwise(
        channels_last(x), weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
        "relu" if relu else "none", [None], "")
