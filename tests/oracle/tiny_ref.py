"""Run upstream romatch Tiny RoMa v1 on saved weights and inputs (executed by the reference venv's python).

Usage: python tiny_ref.py SPEC.pt OUT.pt

SPEC holds:
    weights        a Tiny RoMa state dict (keys ``xfeat.0.*``, ``coarse_matcher.*``, ``fine_matcher.*``)
    cases          list of {"A", "B", "kind", "exact_softmax"}: kind "tensor" (A, B are (B, C, H, W)
                   tensors), "path" (file names, passed as str) or "pil" (file names, opened here with
                   PIL.Image.open); exact_softmax is optional (default False, as published)
    repeats        timed ``match`` calls per case after one warm-up call (default 1, no warm-up)
    threads        torch threads (default 1)
    keep_outputs   save warp and certainty (default True)
OUT gets {"results": [...], "xfeat": which XFeatModel class was used}; each result holds "warp",
"certainty", "seconds" and "best_seconds" (median and minimum over the repeats), "rss_before_mib" and
"peak_rss_mib" (VmRSS before and VmHWM during the timed calls).
Outputs are saved exactly as upstream returns them (unbatched for path and PIL input), with their
shapes also as ``warp_shape`` / ``certainty_shape``.

The XFeat network is ``kornia.feature.XFeatModel`` when kornia provides it; otherwise it is defined below
from the published architecture (``verlab/accelerated_features`` ``modules/model.py``), heads included
because ``TinyRoMa.__init__`` deletes them.
"""

import statistics
import sys
import time

import torch
import torch.nn as nn
from PIL import Image


class _BasicLayer(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size, padding=padding, stride=stride, bias=False)
        self.layer = nn.Sequential(conv, nn.BatchNorm2d(cout, affine=False), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.layer(x)


class _XFeatModel(nn.Module):
    """XFeat as published: backbone, two heads and the MLP fine matcher (the last three Tiny RoMa deletes)."""

    def __init__(self):
        super().__init__()
        B = _BasicLayer
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1, stride=1, padding=0))
        self.block1 = nn.Sequential(B(1, 4, stride=1), B(4, 8, stride=2), B(8, 8, stride=1),
                                    B(8, 24, stride=2))
        self.block2 = nn.Sequential(B(24, 24, stride=1), B(24, 24, stride=1))
        self.block3 = nn.Sequential(B(24, 64, stride=2), B(64, 64, stride=1), B(64, 64, 1, padding=0))
        self.block4 = nn.Sequential(B(64, 64, stride=2), B(64, 64, stride=1), B(64, 64, stride=1))
        self.block5 = nn.Sequential(B(64, 128, stride=2), B(128, 128, stride=1), B(128, 128, stride=1),
                                    B(128, 64, 1, padding=0))
        self.block_fusion = nn.Sequential(B(64, 64, stride=1), B(64, 64, stride=1),
                                          nn.Conv2d(64, 64, 1, padding=0))
        self.heatmap_head = nn.Sequential(B(64, 64, 1, padding=0), B(64, 64, 1, padding=0),
                                          nn.Conv2d(64, 1, 1), nn.Sigmoid())
        self.keypoint_head = nn.Sequential(B(64, 64, 1, padding=0), B(64, 64, 1, padding=0),
                                           B(64, 64, 1, padding=0), nn.Conv2d(64, 65, 1))
        mlp = []
        for cin in (128, 512, 512, 512):
            mlp += [nn.Linear(cin, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(inplace=True)]
        self.fine_matcher = nn.Sequential(*mlp, nn.Linear(512, 64))


def _xfeat():
    try:
        from kornia.feature import XFeatModel

        return XFeatModel(), "kornia.feature.XFeatModel"
    except ImportError:
        return _XFeatModel(), "tiny_ref._XFeatModel"


def _status_mib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _inputs(case):
    if case["kind"] == "pil":
        return Image.open(case["A"]), Image.open(case["B"])
    return case["A"], case["B"]


def main(spec_path, out_path):
    spec = torch.load(spec_path, weights_only=True)
    torch.set_num_threads(int(spec.get("threads", 1)))
    from romatch.models.model_zoo.roma_models import tiny_roma_v1_model

    xfeat, xfeat_name = _xfeat()
    model = tiny_roma_v1_model(weights=spec["weights"], xfeat=xfeat).eval()
    repeats = int(spec.get("repeats", 1))
    results = []
    for case in spec["cases"]:
        model.exact_softmax = bool(case.get("exact_softmax", False))
        if repeats > 1:
            model.match(*_inputs(case))
        _reset_peak()
        rss_before = _status_mib("VmRSS")
        times = []
        for _ in range(repeats):
            a, b = _inputs(case)
            start = time.perf_counter()
            warp, certainty = model.match(a, b)
            times.append(time.perf_counter() - start)
        result = {"seconds": statistics.median(times), "best_seconds": min(times),
                  "peak_rss_mib": _status_mib("VmHWM"), "rss_before_mib": rss_before}
        if spec.get("keep_outputs", True):
            result.update(warp=warp.contiguous(), certainty=certainty.contiguous())
        result.update(warp_shape=list(warp.shape), certainty_shape=list(certainty.shape))
        results.append(result)
    torch.save({"results": results, "xfeat": xfeat_name}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
