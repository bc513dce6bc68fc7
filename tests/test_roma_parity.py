"""Numerical parity of RoMa with upstream romatch 0.1.2 (use_custom_corr=False), CPU fp32, same weights.

Warp and certainty must agree to 1e-4 on at least 99.9 % of values. The reference runs in its own venv
(shared/tools/romatch-oracle.sh); the tests skip when it cannot be built.
"""

from __future__ import annotations

import pytest
import torch
from conftest import fraction_close, run_oracle

from densematch.models.roma.config import PROJ_DIMS, RomaArchitecture
from densematch.models.roma.matcher import build_roma

SMALL = RomaArchitecture(dinov2="vits14", proj_dims={**PROJ_DIMS, 16: (384, 512)})


def random_weights(arch: RomaArchitecture, seed: int = 0) -> tuple[dict, dict]:
    """Random matcher and DINOv2 state dicts, with BatchNorm statistics randomised so they matter."""
    torch.manual_seed(seed)
    model = build_roma("cpu", matcher_weights=False, dinov2_weights=False, arch=arch)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith(".weight") and value.dim() == 1:  # BN / LayerNorm scales
            value.uniform_(0.5, 1.5)
    return state, model.encoder.dinov2.state_dict()


def compare(ours: tuple, ref: dict) -> None:
    warp, certainty = ours
    assert warp.shape == ref["warp"].shape and certainty.shape == ref["certainty"].shape
    assert fraction_close(warp, ref["warp"]) >= 0.999, (warp - ref["warp"]).abs().max()
    assert fraction_close(certainty, ref["certainty"]) >= 0.999, (certainty - ref["certainty"]).abs().max()


def run_both(oracle_python, tmp_path, arch_name, arch, coarse, upsample, upsample_preds, symmetric, cases):
    matcher, dinov2 = random_weights(arch)
    spec = dict(arch=arch_name, matcher=matcher, dinov2=dinov2, coarse_res=coarse, upsample_res=upsample,
                upsample_preds=upsample_preds, symmetric=symmetric, cases=cases)
    ref = run_oracle(oracle_python, "roma_ref.py", spec, tmp_path)["results"]
    model = build_roma("cpu", matcher_weights=matcher, dinov2_weights=dinov2, arch=arch, coarse_res=coarse,
                       upsample_res=upsample, upsample_preds=upsample_preds, symmetric=symmetric)
    for case, expected in zip(cases, ref, strict=True):
        compare(model.match(case["A"], case["B"], im_A_high_res=case.get("A_hr"), im_B_high_res=case.get("B_hr")),
                expected)


@pytest.mark.parametrize("symmetric", [True, False])
def test_small_arch_parity_tensors_and_images(oracle_python, shared_data, tmp_path, symmetric):
    """Every code path (tensor input, PIL/path input with the upsampling pass) on a small DINOv2."""
    torch.manual_seed(1)
    a, b = torch.randn(1, 3, 70, 84), torch.randn(1, 3, 70, 84)
    demo = shared_data / "demo_pairs"
    cases = [
        {"A": a, "B": b},
        {"A": str(demo / "roma_sacre_coeur_A.jpg"), "B": str(demo / "roma_sacre_coeur_B.jpg")},
    ]
    run_both(oracle_python, tmp_path, "vits14", SMALL, (70, 84), (98, 112), False, symmetric, cases[:1])
    run_both(oracle_python, tmp_path, "vits14", SMALL, 56, 84, True, symmetric, cases[1:])


@pytest.mark.slow
@pytest.mark.parametrize("upsample_preds", [False, True])
def test_full_roma_parity_280(oracle_python, shared_data, tmp_path, upsample_preds):
    """The published architecture (DINOv2 ViT-L/14) at coarse 280, with and without upsampling to 420."""
    demo = shared_data / "demo_pairs"
    cases = [{"A": str(demo / "roma_toronto_A.jpg"), "B": str(demo / "roma_toronto_B.jpg")}]
    run_both(oracle_python, tmp_path, "vitl14", RomaArchitecture(), 280, 420, upsample_preds, True, cases)
