"""Differentiable two-view (and multi-view) DLT triangulation and the berHu loss.

This is the "3D noise-aware regulariser" of S2LD (``models/triangulation/triangulation.py`` and
``losses/s2ld_loss.py`` upstream, after learnable-triangulation-pytorch): the fine matches are triangulated
with the ground-truth cameras, image 0's camera at the origin (``P0 = K0 [I | 0]``, ``P1 = K1 T_0to1[:3]``),
each view's two DLT rows weighted by a confidence (1 for image 0, the match confidence for image 1), and
the depth of the point in camera 0 is compared with the ground-truth depth by a berHu loss.

Pixels are OpenCV pixels (:mod:`densematch.conventions`) at the resolution of ``K``; the triangulation
itself is convention-free (whatever convention ``K`` uses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reducer = Callable[[torch.Tensor], torch.Tensor]  # e.g. a sum (counts) or max over DDP processes


def _identity(value: torch.Tensor) -> torch.Tensor:
    return value


def projection_matrices(K0: torch.Tensor, K1: torch.Tensor, T_0to1: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)``, ``(..., 3, 3)``, ``(..., 4, 4)`` -> ``(..., 2, 3, 4)``: ``K0 [I | 0]`` and ``K1 T_0to1[:3]``."""
    eye = torch.eye(3, 4, dtype=K0.dtype, device=K0.device).expand(*K0.shape[:-2], 3, 4)
    return torch.stack((K0 @ eye, K1 @ T_0to1[..., :3, :]), dim=-3)


def triangulate_dlt(
    projections: torch.Tensor, points: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Linear (DLT) triangulation, differentiable through a batched SVD.

    Args:
        projections: ``(..., V, 3, 4)`` projection matrices of the ``V`` views (broadcast against ``points``).
        points: ``(..., V, 2)`` the observations ``(u, v)`` in each view.
        weights: ``(..., V)`` per-view confidences scaling the view's two DLT rows (default all 1).

    Returns:
        ``(..., 3)`` the points in the world frame of the projections (camera 0 for
        :func:`projection_matrices`). Points at infinity come out with huge or non-finite coordinates;
        callers clamp (see :func:`triangulated_depth`).
    """
    projections = projections.expand(*points.shape[:-1], 3, 4)
    third = projections[..., 2:3, :]  # (..., V, 1, 4)
    rows = points[..., :, None] * third - projections[..., :2, :]  # (..., V, 2, 4): u P3 - P1, v P3 - P2
    if weights is not None:
        rows = rows * weights[..., None, None]
    A = rows.reshape(*rows.shape[:-3], 2 * rows.shape[-3], 4)
    _, _, Vh = torch.linalg.svd(A, full_matrices=False)
    homogeneous = Vh[..., -1, :]  # right singular vector of the smallest singular value
    return homogeneous[..., :3] / homogeneous[..., 3:]


def triangulated_depth(
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    K0: torch.Tensor,
    K1: torch.Tensor,
    T_0to1: torch.Tensor,
    confidence1: torch.Tensor | None = None,
    min_depth: float = 0.0,
    max_depth: float = 100.0,
) -> torch.Tensor:
    """Depth in camera 0 of the triangulated matches, as S2LD's ``TriangulationNet``.

    Args:
        kpts0, kpts1: ``(N, 2)`` matches in OpenCV pixels of image 0 and image 1.
        K0, K1: ``(N, 3, 3)`` intrinsics per match (index the batch's ``K`` with the match's batch id).
        T_0to1: ``(N, 4, 4)`` ground-truth relative pose per match.
        confidence1: ``(N,)`` weight of image 1's observation (image 0's is 1), e.g. the match confidence.
        min_depth, max_depth: the depth is clamped to ``[0, max_depth]`` and set to 0 outside
            ``(min_depth, max_depth)`` (upstream ``TRINET.MAX_DEPTH`` is 100).

    Returns:
        ``(N,)`` depth (0 = rejected); differentiable w.r.t. the keypoints and the confidences.
    """
    projections = projection_matrices(K0, K1, T_0to1)
    points = torch.stack((kpts0, kpts1), dim=-2)
    weights = None
    if confidence1 is not None:
        weights = torch.stack((torch.ones_like(confidence1), confidence1), dim=-1)
    z = triangulate_dlt(projections, points, weights)[..., 2]
    z = torch.nan_to_num(z, nan=0.0, posinf=max_depth, neginf=0.0).clamp(0.0, max_depth)
    keep = (z > min_depth) & (z < max_depth)
    return z * keep.to(z.dtype)


def berhu(diff: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Reverse Huber, elementwise: ``|d|`` if ``|d| < c`` else ``(d^2 + c^2) / (2 c)``."""
    absdiff = diff.abs()
    c = torch.as_tensor(threshold, dtype=diff.dtype, device=diff.device).clamp(min=1e-12)
    return torch.where(absdiff < c, absdiff, (absdiff * absdiff + c * c) / (2 * c))


def berhu_loss(
    diff: torch.Tensor,
    mask: torch.Tensor | None = None,
    ratio: float = 0.2,
    count_reducer: Reducer | None = None,
    max_reducer: Reducer | None = None,
) -> torch.Tensor:
    """Mean berHu of ``diff`` over ``mask`` with the threshold ``c = ratio * max |diff|`` (S2LD: 0.2).

    The threshold is detached (upstream takes it with ``.item()``). For DDP-exact results pass
    ``count_reducer`` (sum over processes) and ``max_reducer`` (max over processes); in one process the
    result equals upstream's ``inverse_huber_loss`` on ``diff[mask]``. 0 when nothing is masked in.
    """
    mask = torch.ones_like(diff, dtype=torch.bool) if mask is None else mask
    masked = torch.where(mask, diff.detach().abs(), torch.zeros_like(diff))
    peak = (max_reducer or _identity)(masked.amax() if diff.numel() else diff.new_zeros(()))
    values = berhu(diff, ratio * peak)
    count = (count_reducer or _identity)(mask.sum().to(diff.dtype).detach())
    return torch.where(count > 0, (values * mask).sum() / count.clamp(min=1), diff.sum() * 0)
