"""Semi-dense losses: values by hand, gradients, DDP shares, the S2LD / IMAMatch loss modules and recipes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from semidense_scene import homography_pair, plane_pair, shares_equal_whole

from densematch.errors import ConfigError
from densematch.models.imamatch.loss import IMAMatchLoss
from densematch.models.imamatch.recipe import MEGADEPTH, SCANNET
from densematch.models.s2ld.loss import S2LDLoss, S2LDLossConfig
from densematch.models.s2ld.recipe import RECIPE as S2LD_RECIPE
from densematch.models.semidense.losses import centred_product_mean, fine_l2_loss, focal_loss, padding_weight
from densematch.models.semidense.supervision import CoarseSupervision, cell_points, coarse_targets
from densematch.train.config import TrainConfig, get_recipe, resolved_schedule

GRID = (8, 10)


def test_focal_loss_by_hand():
    conf = torch.tensor([[[0.5, 0.1], [0.3, 0.8]]], requires_grad=True)
    gt = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p = torch.tensor([0.5, 0.8])
    positives = (-0.25 * (1 - p) ** 2 * p.log()).mean()
    n = torch.tensor([0.1, 0.3])
    negatives = (-0.25 * n**2 * (1 - n).log()).mean()
    assert torch.allclose(focal_loss(conf, gt), positives)
    assert torch.allclose(focal_loss(conf, gt, dense=True), positives + negatives)
    assert torch.allclose(focal_loss(conf, gt, dense=True, neg_weight=2.0), positives + 2 * negatives)
    mask0 = torch.tensor([[[True, False]]])  # (B, h, w) coarse masks: cell 1 of image 0 is padding
    mask1 = torch.tensor([[[True, True]]])
    weight = padding_weight({"mask0": mask0, "mask1": mask1})
    assert torch.equal(weight, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    padded_out = (-0.25 * (1 - p[0]) ** 2 * p[0].log()) / 2  # the padded positive still counts, weight 0
    assert torch.allclose(focal_loss(conf, gt, weight), padded_out)
    assert padding_weight({}) is None
    loss = focal_loss(conf, torch.zeros_like(gt))  # nothing supervised: an exact 0 that keeps the graph
    loss.backward()
    assert loss == 0 and conf.grad is not None and conf.grad.abs().sum() == 0


def test_fine_l2_losses_by_hand():
    expec = torch.tensor([[0.1, 0.2, 1.0], [0.5, -0.5, 2.0], [0.0, 0.0, 4.0]], requires_grad=True)
    gt = torch.tensor([[0.2, 0.2], [0.0, 0.0], [1.5, 0.0]])  # the third is outside the window
    err = torch.tensor([0.01, 0.5])
    assert torch.allclose(fine_l2_loss(expec, gt), err.mean())
    inverse = torch.tensor([1.0, 0.5, 0.25])
    weight = inverse / inverse.mean()  # the mean runs over all matches, the average over the correct ones
    assert torch.allclose(fine_l2_loss(expec, gt, with_std=True), (err * weight[:2]).mean())
    valid = torch.tensor([True, False, True])
    assert torch.allclose(fine_l2_loss(expec, gt, valid=valid, with_std=True), err[0] * weight[0])
    fine_l2_loss(expec, gt, with_std=True).backward()
    assert expec.grad[:, :2].abs().sum() > 0 and expec.grad[:, 2].abs().sum() == 0  # std is detached


def test_centred_product_mean_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([0.5, 1.0, 4.0, 2.0])
    mask = torch.tensor([True, True, False, True])
    expected = (a[mask] * (b[mask] - b[mask].mean())).mean()
    assert torch.allclose(centred_product_mean(a, b, mask), expected)


def test_ddp_shares_of_the_shared_losses():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(4, 6, 5, generator=g).clamp(0.05, 0.95).requires_grad_()
    gt = (torch.rand(4, 6, 5, generator=g) > 0.8).float()
    gt[3] = 0  # a shard without positives
    for dense in (False, True):
        shares_equal_whole(lambda x, r, d=dense: focal_loss(x[0], x[1], dense=d, reduce=r), (conf, gt),
                           [(conf[:1], gt[:1]), (conf[1:], gt[1:])], [conf])
    expec = torch.cat((torch.randn(9, 2, generator=g) * 0.6, torch.rand(9, 1, generator=g) + 0.1), 1).requires_grad_()
    fgt = torch.randn(9, 2, generator=g) * 0.6
    shards = [(expec[:4], fgt[:4]), (expec[4:], fgt[4:])]
    shares_equal_whole(lambda x, r: fine_l2_loss(x[0], x[1], with_std=True, reduce=r), (expec, fgt), shards, [expec])
    a = torch.rand(10, generator=g).requires_grad_()
    b = torch.rand(10, generator=g).requires_grad_()
    mask = torch.rand(10, generator=g) > 0.3
    shares_equal_whole(lambda x, r: centred_product_mean(*x, reduce=r), (a, b, mask),
                       [(a[:3], b[:3], mask[:3]), (a[3:], b[3:], mask[3:])], [a, b])


def _s2ld_predictions(batch: dict, seed: int) -> tuple[dict, list[torch.Tensor]]:
    """Stand-in S2LD predictions (differentiable leaves) for one pair."""
    g = torch.Generator().manual_seed(seed)
    base = cell_points(1, GRID, CoarseSupervision(cell_offset=0.0), "cpu")
    jitter0 = (torch.rand(1, 80, 2, generator=g) * 4 - 2).requires_grad_()
    jitter1 = (torch.rand(1, 80, 2, generator=g) * 4 - 2).requires_grad_()
    logits0 = torch.randn(1, 80, generator=g).requires_grad_()
    logits1 = torch.randn(1, 80, generator=g).requires_grad_()
    sim = torch.randn(1, 80, 80, generator=g).requires_grad_()
    coords0, coords1 = base + 3.5 + jitter0, base + 3.5 + jitter1
    spv = coarse_targets(batch, GRID, GRID, keypoints0=coords0, keypoints1=coords1)
    b_ids, i_ids, j_ids = spv["spv_b_ids"], spv["spv_i_ids"], spv["spv_j_ids"]
    expec = torch.cat((torch.rand(len(b_ids), 2, generator=g) * 2 - 1, torch.rand(len(b_ids), 1, generator=g) + 0.1),
                      1).requires_grad_()
    noise = (torch.randn(len(b_ids), 2, generator=g) * 0.5).requires_grad_()
    mconf_logit = torch.randn(len(b_ids), generator=g).requires_grad_()
    predictions = {
        "conf_matrix": sim.softmax(1) * sim.softmax(2), "hw0_c": GRID, "hw1_c": GRID,
        "coords0_i_all": coords0, "coords1_i_all": coords1,
        "score0_i_all": logits0.sigmoid(), "score1_i_all": logits1.sigmoid(),
        "b_ids": b_ids, "i_ids": i_ids, "j_ids": j_ids, "expec_f": expec,
        "mkpts0_f": coords0[b_ids, i_ids], "mkpts1_f": coords1[b_ids, j_ids] + noise,
        "mconf": mconf_logit.sigmoid(), "m_bids": b_ids, **spv,
    }
    return predictions, [sim, expec, jitter1, logits0, logits1, noise, mconf_logit]


def _concat(parts: list[dict]) -> dict:
    """Batch the predictions of single pairs (match tensors concatenated, batch ids shifted)."""
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key in ("b_ids", "m_bids", "spv_b_ids"):
            out[key] = torch.cat([v + k for k, v in enumerate(values)])
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values)
        else:
            out[key] = values[0]
    return out


def test_s2ld_loss_terms_gradients_and_ddp_shares():
    batches = [plane_pair(t=(0.8, 0.05, 0.1)), plane_pair(t=(0.5, -0.3, 0.2))]
    parts = [_s2ld_predictions(b, seed) for seed, b in enumerate(batches)]
    whole_batch = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    whole = _concat([p for p, _ in parts])
    leaves = [leaf for _, ls in parts for leaf in ls]
    out = S2LDLoss()(whole, whole_batch)
    assert set(out.terms) == {"coarse", "fine", "keypoint", "repeatability", "score", "depth"}
    assert torch.isfinite(out.total) and all(torch.isfinite(v) for v in out.terms.values())
    assert out.terms["depth"] > 0 and out.terms["keypoint"] > 0
    grads = torch.autograd.grad(out.total, leaves, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)  # every prediction receives a gradient
    no_depth = S2LDLossConfig(sparse_weight=0.0)  # berHu's threshold is a per-process max under DDP

    def loss_of(x, reduce):
        return S2LDLoss(no_depth, count_reducer=reduce)(*x).total

    shards = [(p, b) for (p, _), b in zip(parts, batches, strict=True)]
    shares_equal_whole(loss_of, (whole, whole_batch), shards, leaves)
    recomputed = S2LDLoss()({k: v for k, v in whole.items() if not k.startswith(("spv_", "conf_matrix_gt"))},
                            whole_batch)  # ground truth rebuilt from the keypoints
    assert torch.allclose(recomputed.total, out.total)


def test_s2ld_loss_without_cameras_skips_the_depth_term():
    H = torch.tensor([[1.0, 0.0, 8.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    batch = homography_pair(H)
    predictions, _ = _s2ld_predictions(batch, 0)
    out = S2LDLoss()(predictions, batch)
    assert "depth" not in out.terms and torch.isfinite(out.total)


def test_imamatch_loss_by_hand():
    conf = torch.tensor([[[0.6, 0.1], [0.2, 0.7]]], requires_grad=True)
    gt = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    pred1 = torch.tensor([[0.25, 0.5], [0.0, 0.0], [0.1, 0.1]], requires_grad=True)
    predictions = {
        "conf_matrix": conf, "conf_matrix_gt": gt,
        "step1_offset": pred1, "step1_offset_gt": torch.tensor([[0.5, 0.5], [2.0, 0.0], [0.0, 0.0]]),
        "step1_prob": torch.tensor([0.5, 0.9, 0.2]), "step1_valid": torch.tensor([True, True, False]),
        "step2_offset": torch.tensor([[0.0, 0.1], [0.3, 0.3], [0.0, 0.0]]),
        "step2_offset_gt": torch.tensor([[0.0, 0.0], [0.3, -0.7], [1.2, 0.0]]),
        "step2_valid": torch.tensor([True, True, True]),
    }
    out = IMAMatchLoss()(predictions, {})
    p = torch.tensor([0.6, 0.7])
    assert torch.allclose(out.terms["coarse"], (-0.25 * (1 - p) ** 2 * p.log()).mean())
    assert torch.allclose(out.terms["fine_reg1"], torch.tensor(0.0625))
    assert torch.allclose(out.terms["fine_cls"], torch.tensor(-0.1 * 0.5 * math.log(0.5 + 1e-6)))
    assert torch.allclose(out.terms["fine_reg2"], torch.tensor((0.01 + 1.0) / 2))
    assert torch.allclose(out.total, out.terms["coarse"] + out.terms["fine"])
    out.total.backward()
    assert pred1.grad[0].abs().sum() > 0 and pred1.grad[1:].abs().sum() == 0  # masked samples get nothing


def _peaked_predictions(scale: float):
    """IMAMatch-loss inputs from similarities ``scale * randn``: large scales put the true matches far below
    the 1e-6 clamp, as untrained IMAMatch features do."""
    from densematch.models.semidense.coarse_matching import dual_log_softmax_at

    g = torch.Generator().manual_seed(3)
    sim = (scale * torch.randn(2, 12, 12, generator=g)).requires_grad_()
    gt = torch.zeros(2, 12, 12)
    gt.scatter_(2, sim.detach().argmin(2, keepdim=True), 1.0)  # the least similar cell: p tiny when peaked
    win = (scale * torch.randn(5, 9, 9, generator=g)).requires_grad_()
    rows, index = torch.arange(5), win.detach()[:, 4].argmin(1)
    mid = torch.full_like(index, 4)
    empty = torch.zeros(5, 2)
    return sim, win, {
        "conf_matrix": sim.softmax(1) * sim.softmax(2), "conf_matrix_gt": gt,
        "log_conf_gt": dual_log_softmax_at(sim, *torch.where(gt > 0)),
        "step1_offset": empty, "step1_offset_gt": empty, "step1_valid": torch.ones(5, dtype=torch.bool),
        "step1_prob": (win.softmax(1) * win.softmax(2))[rows, 4, index],
        "step1_log_prob": dual_log_softmax_at(win, rows, mid, index),
        "step2_offset": empty, "step2_offset_gt": empty, "step2_valid": torch.zeros(5, dtype=torch.bool),
    }


def test_dual_log_softmax_at_is_the_log_of_the_dual_softmax():
    sim, win, pred = _peaked_predictions(1.0)
    b, i, j = torch.where(pred["conf_matrix_gt"] > 0)
    assert torch.allclose(pred["log_conf_gt"], pred["conf_matrix"][b, i, j].log(), atol=1e-5)
    assert torch.allclose(pred["step1_log_prob"], pred["step1_prob"].log(), atol=1e-5)
    _, _, peaked = _peaked_predictions(60.0)  # conf underflows to 0; the exact log stays finite
    assert (peaked["conf_matrix"][peaked["conf_matrix_gt"] > 0] < 1e-30).any()
    assert torch.isfinite(peaked["log_conf_gt"]).all() and peaked["log_conf_gt"].min() < -100


@pytest.mark.parametrize("scale", [1.0, 60.0])
def test_imamatch_exact_log_gradient_keeps_upstream_values(scale):
    """Values equal upstream's formula either way; where every p >= 1e-6 the gradient is upstream's (the coarse
    clamp: exactly; the classification's ``log(p + 1e-6)``: up to its factor ``p / (p + 1e-6)``), and it is
    far from 0 (upstream's: ~0) when the true matches sit far below the clamp."""
    grads, values = {}, {}
    for exact in (True, False):
        sim, win, pred = _peaked_predictions(scale)
        loss = IMAMatchLoss(dataclasses.replace(IMAMatchLoss().config, exact_log_gradient=exact))
        out = loss(pred, {})
        out.total.backward()
        values[exact] = (out.terms["coarse"].item(), out.terms["fine_cls"].item())
        grads[exact] = (sim.grad.clone(), win.grad.clone())
    assert values[True] == pytest.approx(values[False], rel=1e-6)
    if scale == 1.0:  # nothing clamped: the same gradients
        assert torch.allclose(grads[True][0], grads[False][0], atol=1e-7)
        assert torch.allclose(grads[True][1], grads[False][1], rtol=2e-2, atol=1e-7)
    else:
        assert values[True][0] == pytest.approx(0.25 * -math.log(1e-6), rel=1e-3)  # every positive clamped
        for ours, upstream in zip(grads[True], grads[False], strict=True):
            assert upstream.abs().max() < 1e-6 < ours.abs().max() * 1e-3


def test_imamatch_loss_rebuilds_coarse_ground_truth():
    batch = plane_pair(t=(0.8, 0.0, 0.0))
    conf = torch.full((1, 80, 80), 0.5, requires_grad=True)
    empty = torch.zeros(0, 2)
    predictions = {"conf_matrix": conf, "hw0_c": GRID, "hw1_c": GRID, "step1_offset": empty, "step1_offset_gt": empty,
                   "step1_prob": torch.zeros(0), "step1_valid": torch.zeros(0, dtype=torch.bool),
                   "step2_offset": empty, "step2_offset_gt": empty, "step2_valid": torch.zeros(0, dtype=torch.bool)}
    out = IMAMatchLoss()(predictions, batch)
    assert torch.allclose(out.terms["coarse"], torch.tensor(-0.25 * 0.25 * math.log(0.5)))
    assert out.terms["fine"] == 0


def test_recipes_and_presets():
    loss = S2LD_RECIPE.build_loss("megadepth")
    assert isinstance(loss, S2LDLoss) and not loss.config.sparse_spvs and loss.config.keypoint_weight == 0.1
    test = dataclasses.replace(S2LD_RECIPE, **S2LD_RECIPE.presets["test"])
    config = test.build_loss("megadepth").config
    assert config.sparse_spvs and config.sparse_weight == 0.2 and config.repeatability_weight == 1.0
    assert S2LD_RECIPE.groups[0].lr_per_8 * 64 / 8 == pytest.approx(8e-3)
    schedule = S2LD_RECIPE.schedule
    assert schedule.warmup_for(total_steps=10**6, batch_size=2) == 1875 * 32  # LoFTR: WARMUP_STEP / SCALING
    assert schedule.grad_clip == 0.5 and schedule.gamma == 0.5 and schedule.weight_decay == 0.1
    assert all(0 < m <= 1 for m in test.schedule.milestones)
    pretrain = dataclasses.replace(S2LD_RECIPE, **S2LD_RECIPE.presets["pretrain_detector"])
    assert pretrain.build_loss("megadepth").config.coarse_weight == 0 and "s2ld_coarse." in pretrain.frozen
    assert MEGADEPTH.groups[0].lr_per_8 * 4 / 8 == pytest.approx(3.75e-4)
    assert MEGADEPTH.schedule.warmup_for(total_steps=3000, batch_size=4) == 300  # 3 of 30 epochs
    assert SCANNET.schedule.warmup_for(3000, 4) == 0 and SCANNET.resolution == (480, 640)
    assert isinstance(MEGADEPTH.build_loss("megadepth"), IMAMatchLoss)
    run = TrainConfig(model="s2ld", data=("unused",), output="unused", steps=1000, batch_size=2, preset="test")
    resolved = resolved_schedule(run, get_recipe("s2ld", "test"))
    assert resolved.warmup_steps == 60000 and resolved.milestones == test.schedule.milestones
    overridden = resolved_schedule(dataclasses.replace(run, warmup_steps=5), get_recipe("s2ld"))
    assert overridden.warmup_steps == 5 and overridden.warmup_batch is None
    with pytest.raises(ConfigError):
        dataclasses.replace(S2LD_RECIPE, loss_options={"keypoint_wieght": 1.0}).build_loss("megadepth")


NETWORK_MODULES = {
    "s2ld": ("backbone.", "keypoint_detector.", "feature_adjuster.", "s2ld_coarse.", "fine_preprocess.", "s2ld_fine."),
    "imamatch_megadepth": ("backbone.", "attn1.", "attn2.", "regression1.", "regression2."),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETWORK_MODULES))
def test_network_training_step_reaches_every_module(name):
    """One step of the real network: training_forward + the recipe's loss -> gradients in every module."""
    import densematch
    from densematch.models.contract import prepare_images
    from densematch.registry import get_entry

    torch.manual_seed(0)
    net = densematch.load(name, weights=False).train()
    batch = plane_pair(height=64, width=96, t=(0.3, 0.05, 0.1), focal=120)
    batch["image1"] = batch["image0"].clone()
    for key in ("image0", "image1"):
        batch[key] = prepare_images(batch[key], net.input_spec)
    predictions = net.training_forward(batch)
    out = get_entry(name).training_recipe().build_loss("megadepth")(predictions, batch)
    assert torch.isfinite(out.total) and all(torch.isfinite(v) for v in out.terms.values())
    out.total.backward()
    for module in NETWORK_MODULES[name]:
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(module) and p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, module
