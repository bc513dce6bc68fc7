"""Two-view bundle adjustment: refine a relative pose from confidence-weighted matches.

This is IMAMatch's test-time pose refinement (``ba/bundle_adjust_gauss_newton_2_view.py``, itself from
barbararoessle/e2e_multi_view_matching), written without pytorch3d or kornia:

* camera 0 is fixed at the origin; the unknowns are camera 1's pose (6 DoF, left-multiplied update
  ``T <- exp(delta) T`` with ``delta = (translation part, rotation part)`` as pytorch3d's ``se3_exp_map``)
  and every match's 3D point (initialised by DLT triangulation with the initial pose);
* observations are intrinsics-normalised points; each match gives one observation per view, both with
  the match confidence normalised so that the confidences of the matches sum to 1 (upstream: divided
  by half the sum over observations); residual ``conf * (pi(T X) - x)``;
* Levenberg-Marquardt: Jacobi preconditioning (``diag(A)^-1 A``, skipped when a diagonal entry is 0) plus
  damping ``lambda I``, ``lambda`` starting at 0.1, divided by 3.5 when the residual improves on the best so
  far and multiplied by 1.5 otherwise; as upstream the iterate is *not* rolled back after a worse step,
  but the pose with the best residual over the 10 iterations is returned; more than 6 matches needed.

Differences from upstream, all numerically equivalent up to rounding: the preconditioned damped system
``(D^-1 A + lambda I) x = D^-1 b`` is solved as ``(A + lambda D) x = b`` by the Schur complement on the
block-diagonal point block (O(N) instead of a dense LU of size 6 + 3N), and in float64 by default
(upstream float32).
"""

from __future__ import annotations

import numpy as np
import torch

from .triangulation import triangulate_dlt


def hat(v: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` -> ``(..., 3, 3)`` skew-symmetric matrices with ``hat(a) @ b = a x b``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (zero, -z, y, z, zero, -x, -y, x, zero)
    return torch.stack(rows, dim=-1).reshape(*v.shape[:-1], 3, 3)


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Exponential map ``(..., 6)`` ``(v, w)`` -> ``(..., 4, 4)`` ``[[R, t], [0, 1]]`` (column convention).

    ``R = exp(hat(w))`` (Rodrigues) and ``t = V(w) v``, the matrix exponential of ``[[hat(w), v], [0, 0]]``;
    the same map as pytorch3d's ``se3_exp_map`` (which returns the transpose). Taylor series near 0.
    """
    v, w = xi[..., :3], xi[..., 3:]
    theta2 = (w * w).sum(-1)[..., None, None]
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2_safe * theta))
    W = hat(w)
    W2 = W @ W
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(W)
    R = eye + a * W + b * W2
    V = eye + b * W + c * W2
    T = torch.zeros(*xi.shape[:-1], 4, 4, dtype=xi.dtype, device=xi.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = (V @ v[..., None])[..., 0]
    T[..., 3, 3] = 1
    return T


def _normal_equations(T1: torch.Tensor, points: torch.Tensor, obs0: torch.Tensor, obs1: torch.Tensor, conf):
    """Residual norm and the blocks of ``J^T J`` / ``-J^T r`` for the current camera-1 pose and points."""
    blocks = []
    residual = points.new_zeros(())
    for R, t, obs, cam in ((None, None, obs0, False), (T1[:3, :3], T1[:3, 3], obs1, True)):
        Ap = points if R is None else points @ R.T + t
        z = Ap[:, 2]
        r = conf[:, None] * (Ap[:, :2] / z[:, None] - obs)
        residual = residual + (r * r).sum()
        J_proj = torch.zeros(len(z), 2, 3, dtype=Ap.dtype, device=Ap.device)
        J_proj[:, 0, 0] = J_proj[:, 1, 1] = 1 / z
        J_proj[:, :, 2] = -Ap[:, :2] / (z * z)[:, None]
        J_proj = conf[:, None, None] * J_proj
        J_pt = J_proj if R is None else J_proj @ R
        J_cam = None
        if cam:
            I_hat = torch.cat((torch.eye(3, dtype=Ap.dtype, device=Ap.device).expand(len(z), 3, 3), -hat(Ap)), -1)
            J_cam = J_proj @ I_hat
        blocks.append((J_pt, J_cam, r))
    (J_pt0, _, r0), (J_pt1, J_cam, r1) = blocks
    A_pp = J_pt0.transpose(1, 2) @ J_pt0 + J_pt1.transpose(1, 2) @ J_pt1  # (N, 3, 3)
    b_p = -(J_pt0.transpose(1, 2) @ r0[..., None] + J_pt1.transpose(1, 2) @ r1[..., None])  # (N, 3, 1)
    A_cc = (J_cam.transpose(1, 2) @ J_cam).sum(0)  # (6, 6)
    A_cp = J_cam.transpose(1, 2) @ J_pt1  # (N, 6, 3)
    b_c = -(J_cam.transpose(1, 2) @ r1[..., None]).sum(0)  # (6, 1)
    return residual, (A_cc, A_cp, A_pp, b_c, b_p)


def _damped_step(system, damping: float):
    """Solve ``(A + damping * D) x = b`` (D = diag(A), or I if it has a 0) by the Schur complement."""
    A_cc, A_cp, A_pp, b_c, b_p = system
    diag_c = torch.diagonal(A_cc)
    diag_p = torch.diagonal(A_pp, dim1=-2, dim2=-1)
    precondition = bool((diag_c > 0).all() and (diag_p > 0).all())
    D_c = torch.diag_embed(diag_c.clamp(min=1e-12)) if precondition else torch.eye(6, dtype=A_cc.dtype)
    D_p = torch.diag_embed(diag_p.clamp(min=1e-12)) if precondition else torch.eye(3, dtype=A_cc.dtype)
    A_cc = A_cc + damping * D_c
    A_pp = A_pp + damping * D_p
    try:
        A_pp_inv = torch.linalg.inv(A_pp)
        K = A_cp @ A_pp_inv  # (N, 6, 3)
        S = A_cc - (K @ A_cp.transpose(1, 2)).sum(0)
        delta_c = torch.linalg.solve(S, b_c - (K @ b_p).sum(0))
    except RuntimeError:  # singular system: no update (upstream: LU info != 0)
        return None
    delta_p = A_pp_inv @ (b_p - A_cp.transpose(1, 2) @ delta_c)
    if not (torch.isfinite(delta_c).all() and torch.isfinite(delta_p).all()):
        return None
    return delta_c[:, 0], delta_p[..., 0]


def bundle_adjust_two_view(
    obs0: torch.Tensor,
    obs1: torch.Tensor,
    confidences: torch.Tensor,
    T_0to1: torch.Tensor,
    iterations: int = 10,
    damping: float = 0.1,
    damping_decrease: float = 3.5,
    damping_increase: float = 1.5,
) -> torch.Tensor | None:
    """Refine ``T_0to1`` ``(4, 4)`` from normalised observations ``obs0, obs1`` ``(N, 2)`` and confidences ``(N,)``.

    Matches with confidence <= 0 are ignored. Returns the best ``(4, 4)`` pose, or ``None`` with 6 or fewer
    usable matches.
    """
    keep = confidences > 0
    obs0, obs1, conf = obs0[keep], obs1[keep], confidences[keep]
    if len(conf) <= 6:
        return None
    conf = conf / conf.sum().clamp(min=1e-6)
    T1 = T_0to1.clone()
    eye = torch.eye(3, 4, dtype=T1.dtype, device=T1.device)
    points = triangulate_dlt(torch.stack((eye, T1[:3])), torch.stack((obs0, obs1), dim=1))
    best, best_residual = T1.clone(), None
    for i in range(iterations + 1):
        residual, system = _normal_equations(T1, points, obs0, obs1, conf)
        if i == 0:
            best_residual = residual
        elif torch.isfinite(residual) and residual < best_residual:
            best, best_residual = T1.clone(), residual
            damping = damping / damping_decrease
        else:
            damping = damping * damping_increase
        if i == iterations:
            break
        step = _damped_step(system, damping)
        if step is None:
            continue
        T1 = se3_exp(step[0]) @ T1
        points = points + step[1]
    return best


def refine_pose_ba(kpts0, kpts1, K0, K1, R, t, confidences=None, iterations: int = 10):
    """Refine a relative pose ``(R, t)`` (camera 0 -> camera 1) by two-view bundle adjustment.

    Args:
        kpts0, kpts1: ``(N, 2)`` matches in OpenCV pixels (typically the RANSAC inliers).
        K0, K1: ``(3, 3)`` intrinsics.
        R, t: the initial pose, ``(3, 3)`` and ``(3,)`` (e.g. from the essential matrix; unit ``t`` is fine).
        confidences: ``(N,)`` match confidences (default all 1).

    Returns:
        ``(R, t)`` as float64 numpy arrays: the refined pose, or the input pose unchanged when there are
        6 or fewer matches. ``t`` keeps BA's scale (only its direction is meaningful).
    """
    f64 = dict(dtype=torch.float64)
    kpts0, kpts1 = torch.as_tensor(np.asarray(kpts0), **f64), torch.as_tensor(np.asarray(kpts1), **f64)
    K0, K1 = torch.as_tensor(np.asarray(K0), **f64), torch.as_tensor(np.asarray(K1), **f64)
    conf = torch.ones(len(kpts0), **f64) if confidences is None else torch.as_tensor(np.asarray(confidences), **f64)
    T = torch.eye(4, **f64)
    T[:3, :3] = torch.as_tensor(np.asarray(R), **f64)
    T[:3, 3] = torch.as_tensor(np.asarray(t), **f64).reshape(3)
    refined = bundle_adjust_two_view(_normalise(kpts0, K0), _normalise(kpts1, K1), conf, T, iterations)
    refined = T if refined is None else refined
    return refined[:3, :3].numpy(), refined[:3, 3].numpy()


def _normalise(uv: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return (uv - K[:2, 2]) / torch.stack((K[0, 0], K[1, 1]))
