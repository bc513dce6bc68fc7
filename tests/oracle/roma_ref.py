"""Run upstream romatch RoMa on saved weights and inputs (executed by the reference venv's python).

Usage: python roma_ref.py SPEC.pt OUT.pt

SPEC holds: arch ("vitl14" or "vits14"), matcher (state dict), dinov2 (state dict), coarse_res,
upsample_res, upsample_preds, symmetric, and cases: a list of dicts with "A", "B" (tensors or paths) and
optionally "A_hr", "B_hr". OUT gets a list of {"warp", "certainty", "seconds"} per case, plus
"peak_rss_mib" of the matching phase.
"""

import os
import sys
import time

import romatch.models.encoders as enc
import romatch.models.model_zoo.roma_models as rm
import romatch.models.transformer as rt
import torch
from romatch.models.matcher import RegressionMatcher
from torch import nn


class _NoLoad(RegressionMatcher):
    def load_state_dict(self, sd, strict=True, assign=False):
        if sd is None:
            return None
        return super().load_state_dict(sd, strict=strict, assign=assign)


def _forward_any_width(self, x, upsample=False):
    """romatch CNNandDinov2.forward with ``reshape(B, 1024, ...)`` generalised to the DINOv2 width."""
    B, C, H, W = x.shape
    feature_pyramid = self.cnn(x)
    if not upsample:
        with torch.no_grad():
            if self.dinov2_vitl14[0].device != x.device:
                self.dinov2_vitl14[0] = self.dinov2_vitl14[0].to(x.device).to(self.amp_dtype)
            tokens = self.dinov2_vitl14[0].forward_features(x.to(self.amp_dtype))["x_norm_patchtokens"]
            feature_pyramid[16] = tokens.permute(0, 2, 1).reshape(B, -1, H // 14, W // 14)
    return feature_pyramid


def _vmhwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(spec_path, out_path):
    torch.set_num_threads(int(os.environ.get("ORACLE_THREADS", "2")))
    spec = torch.load(spec_path, weights_only=True)
    rm.RegressionMatcher = _NoLoad
    if spec["arch"] == "vits14":
        # a small DINOv2 for fast tests: CNNandDinov2 imports vit_large from romatch.models.transformer at
        # call time, and its forward hard-codes 1024 channels in one reshape, so that line is generalised
        rt.vit_large = rt.dinov2.vit_small
        enc.CNNandDinov2.forward = _forward_any_width
    model = rm.roma_model(
        resolution=spec["coarse_res"], upsample_preds=spec["upsample_preds"], device="cpu", weights=None,
        dinov2_weights=spec["dinov2"], amp_dtype=torch.float32, use_custom_corr=False,
        symmetric=spec["symmetric"], upsample_res=spec["upsample_res"],
    )
    if spec["arch"] == "vits14":
        model.decoder.proj["16"][0] = nn.Conv2d(384, 512, 1, 1)
    model.load_state_dict(spec["matcher"])
    model.eval()
    results = []
    open("/proc/self/clear_refs", "w").write("5")
    for case in spec["cases"]:
        start = time.perf_counter()
        warp, certainty = model.match(case["A"], case["B"], im_A_high_res=case.get("A_hr"),
                                      im_B_high_res=case.get("B_hr"), device="cpu")
        results.append({"warp": warp, "certainty": certainty, "seconds": time.perf_counter() - start})
    torch.save({"results": results, "peak_rss_mib": _vmhwm_mib()}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
