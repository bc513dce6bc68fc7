"""The real RoMa network (small DINOv2) in training mode against the published loss: shapes and gradients."""

from __future__ import annotations

import torch

from densematch.conventions import normalized_grid
from densematch.models.roma.config import PROJ_DIMS, RomaArchitecture
from densematch.models.roma.loss import RomaLoss
from densematch.models.roma.matcher import build_roma
from densematch.models.roma.targets import TargetConfig
from densematch.train.trainer import prepared_batch

SMALL = RomaArchitecture(dinov2="vits14", proj_dims={**PROJ_DIMS, 16: (384, 512)})


def test_roma_training_step_reaches_every_trainable_part():
    torch.manual_seed(0)
    model = build_roma("cpu", matcher_weights=False, dinov2_weights=False, arch=SMALL, coarse_res=56).train()
    image = torch.rand(2, 3, 56, 56)
    batch = {"image0": image, "image1": image.clone(), "warp0": normalized_grid(56, 56)[None].repeat(2, 1, 1, 1),
             "valid0": torch.ones(2, 56, 56, dtype=torch.bool)}
    corresps = model.training_forward(prepared_batch(batch, model))
    assert sorted(corresps) == [1, 2, 4, 8, 16]
    assert corresps[16]["gm_cls"].shape == (2, 64 * 64, 4, 4)  # one direction, not the symmetric 2B
    assert corresps[1]["flow"].shape == (2, 2, 56, 56) and corresps[1]["certainty"].shape == (2, 1, 56, 56)
    out = RomaLoss(targets=TargetConfig(source="warp"))(corresps, batch)
    assert torch.isfinite(out.total) and out.total > 0
    out.total.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert not any("dinov2" in name for name in grads)  # frozen and outside the state dict, as published
    for prefix in ("encoder.cnn.layers.0.", "decoder.embedding_decoder.", "decoder.gps.16.", "decoder.proj.1.",
                   "decoder.conv_refiner.16.", "decoder.conv_refiner.1."):
        assert any(name.startswith(prefix) and g is not None and g.abs().sum() > 0 for name, g in grads.items()), prefix
    assert model.encoder.dinov2.cls_token.grad is None
