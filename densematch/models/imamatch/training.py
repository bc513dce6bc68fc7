"""IMAMatch's training-mode forward (upstream ``Matcher.forward_train`` + ``models/utils.py:
pre_process_data``), returning what the published losses need.

Ground truth comes from the batch (:mod:`densematch.models.contract`): ``warp0 (B, H, W, 2)``, normalised
coordinates in image 1 of every image-0 pixel, and ``valid0 (B, H, W)``. Coarse matches are
``batch["conf_matrix_gt"] (B, L0, L1)`` when the supervision already put it there (LoFTR cell-centre
ground truth); otherwise :func:`densematch.models.semidense.supervision.coarse_targets` computes it: cell
centres ``8 i + 3.5`` warped by depth + pose with the 0.2 relative-depth check and the mutual check in both
directions, by the exact homography, or by ``warp0`` when the pair has nothing else.

Fine ground truth, as upstream but from ``warp0``: the query is a random one of the 4 x 4 sub-positions of
its cell at 1/2 resolution (``4 c0 + randint(0, 4)``), the step-1 reference the cell centre ``4 c1 + 1.5``;
the target is where ``warp0`` sends full-resolution pixel ``2 q`` (halved). Step 2 is centred on the
rounded target plus a jitter in {-1, 0, 1}. The released code's four training bugs are fixed: the wrong
``pre_process_data(data, max_match=...)`` call and the undefined ``b_ids_d2`` (no such step here),
``offsets0`` defaulting to ones and ``w0`` used for ``w1`` (cells and targets use each image's own size),
and the step-2 bound check compares y with the height (upstream: both with ``4 w0``). Targets are also
marked invalid where ``valid0`` is False (upstream keeps depth-less targets, masked only by their size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import InputShapeError
from ..semidense.coarse_matching import dual_log_softmax_at
from ..semidense.supervision import coarse_targets
from .coarse import cell_xy, coarse_similarity
from .fine import dual_softmax, sample_windows, step1, step2, window_offsets


def _warp_at(warp0: torch.Tensor, valid0: torch.Tensor, b: torch.Tensor, xy: torch.Tensor):
    """Image-1 pixels (OpenCV) and validity of integer image-0 pixels ``xy (N, 2)`` of pairs ``b``."""
    _, height, width, _ = warp0.shape
    x, y = xy[:, 0].long(), xy[:, 1].long()
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
    target = ((warp0[b, y, x] + 1) * warp0.new_tensor([width, height]) - 1) / 2
    return target, valid0[b, y, x] & inside


def training_forward(net, batch: dict) -> dict:
    """Training forward of IMAMatch on a batch of B pairs.

    ``batch``: ``image0, image1 (B, 1, H, W)`` (prepared per ``input_spec``), ``warp0 (B, H, W, 2)``,
    ``valid0 (B, H, W)``; optional ``mask0, mask1 (B, H/8, W/8)`` bool (padding) and
    ``conf_matrix_gt (B, L0, L1)``. Returns (N fine samples, radii r1 = 3.5, r2 = 1.5, at 1/2 resolution):

    * ``conf_matrix (B, L0, L1)``: coarse dual-softmax confidence; ``conf_matrix_gt`` the same shape, 0/1;
      ``log_conf_gt (M,)``: the exact log-confidence at the M ground-truth matches (``torch.where`` order);
    * ``fine_b_ids (N,)``, ``fine_query (N, 2)``, ``fine_reference (N, 2)`` (step-1 window centres);
    * ``step1_offset (N, 2)`` predicted / ``step1_offset_gt (N, 2)`` true offset in units of r1;
    * ``step1_prob (N,)``: dual-softmax probability of the true cell in the centre query row (7 x 7 window),
      ``step1_log_prob (N,)`` its exact logarithm;
    * ``step2_offset, step2_offset_gt (N, 2)`` in units of r2 around the jittered step-2 centre;
    * ``step1_valid, step2_valid (N,)`` bool: the target exists (``valid0``) and the window is inside the map.
      The published losses further keep only ``|offset_gt| <= 1``.
    """
    image0, image1 = batch["image0"], batch["image1"]
    if image0.ndim != 4 or image0.shape[1] != 1:
        raise InputShapeError(f"IMAMatch trains on (B, 1, H, W) grey images, got {tuple(image0.shape)}")
    b = image0.shape[0]
    f2, _, f8 = net.features(image0, image1)
    h8, w8 = f8.shape[-2:]
    sim = coarse_similarity(f8[:b], f8[b:], net.arch.coarse_temperature, batch.get("mask0"), batch.get("mask1"))
    conf = F.softmax(sim, 1) * F.softmax(sim, 2)
    gt = batch.get("conf_matrix_gt")
    if gt is None:  # LoFTR cell-centre GT: depth + pose (mutual, both directions), H, or warp0
        gt = coarse_targets(batch, (h8, w8), (h8, w8))["conf_matrix_gt"]
    b_ids, i_ids, j_ids = torch.where(gt > 0)
    log_conf_gt = dual_log_softmax_at(sim, b_ids, i_ids, j_ids)
    fake = b_ids.numel() == 0  # keep every parameter in the graph (DDP), as upstream's fake matches
    if fake:
        b_ids = i_ids = j_ids = torch.zeros(1, dtype=torch.long, device=image0.device)
    c0, c1 = cell_xy(i_ids, w8).float(), cell_xy(j_ids, w8).float()
    query = c0 * 4 + torch.randint(0, 4, c0.shape, device=c0.device)
    reference = c1 * 4 + 1.5
    target, valid = _warp_at(batch["warp0"], batch["valid0"], b_ids, query * 2)
    target = target / 2
    valid = valid & ~torch.tensor(fake, device=valid.device)
    centre2 = target.round() + torch.randint(-1, 2, c0.shape, device=c0.device)
    h2, w2 = f2.shape[-2:]
    inside2 = (centre2[:, 0] >= 0) & (centre2[:, 0] < w2) & (centre2[:, 1] >= 0) & (centre2[:, 1] < h2)

    r1, r2 = net.window1 / 2, net.window2 / 2
    off1, off2 = window_offsets(net.window1, c0.device), window_offsets(net.window2, c0.device)
    fq, fr = f2[:b], f2[b:]
    pred1, sim = step1(net.attn1, net.regression1, sample_windows(fq, query, off1, b_ids),
                       sample_windows(fr, reference, off1, b_ids))
    offset1 = (target - reference).detach()
    cell = (offset1 + net.window1 // 2).round().clamp(0, net.window1 - 1).long()
    index = cell[:, 0] + cell[:, 1] * net.window1
    mid = sim.shape[1] // 2
    rows = torch.arange(sim.shape[0], device=sim.device)
    prob = dual_softmax(sim)[rows, mid, index]
    log_prob = dual_log_softmax_at(sim, rows, torch.full_like(index, mid), index)
    pred2 = step2(net.attn2, net.regression2, sample_windows(fq, query, off2, b_ids),
                  sample_windows(fr, centre2, off2, b_ids))
    return {
        "conf_matrix": conf, "conf_matrix_gt": gt, "log_conf_gt": log_conf_gt,
        "fine_b_ids": b_ids, "fine_query": query, "fine_reference": reference,
        "step1_offset": pred1, "step1_offset_gt": offset1 / r1, "step1_prob": prob,
        "step1_log_prob": log_prob, "step1_valid": valid,
        "step2_offset": pred2, "step2_offset_gt": (target - centre2).detach() / r2, "step2_valid": valid & inside2,
    }
