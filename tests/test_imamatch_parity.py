"""IMAMatch vs the reference (``shared/oracles/run_imamatch.py``, upstream ``forward_test``) on CPU fp32.

Both run the same random weights, saved from *our* model (perturbed so that BatchNorm statistics, biases
and the constant-initialised ``scale``/``scale_weight`` matter), on the same input tensors (the driver's,
stored in its npz). Compared to 1e-4: the mutual coarse matches given to the direction RANSAC, the
direction, the densified queries and reference start points of step 1, the fine matches and their scores.
Random weights give no matches at the published thresholds, so the coarse threshold is 0 (the oracle
README's override).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from densematch.models.imamatch.zoo import imamatch_megadepth, imamatch_scannet

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    # name: (factory, driver config, W x H, driver overrides, our options)
    "megadepth": (imamatch_megadepth, "megadepth", (320, 256), ["--thresh", "0", "--add-matches", "0"],
                  {"coarse_threshold": 0.0, "add_matches": 0}),
    # the same pair the other way round: image 0 is now the more spread one, so the reversed branch runs
    "megadepth_reversed": (imamatch_megadepth, "megadepth", (320, 256), ["--thresh", "0", "--add-matches", "0"],
                           {"coarse_threshold": 0.0, "add_matches": 0}),
    "scannet": (imamatch_scannet, "scannet", (256, 480), ["--thresh", "0"], {"coarse_threshold": 0.0}),
    "megadepth_densified": (
        imamatch_megadepth, "megadepth", (256, 224),
        ["--thresh", "0", "--add-matches", "9", "--allow-reverse", "0", "--iter-optimize", "0"],
        {"coarse_threshold": 0.0, "add_matches": 9, "allow_reverse": False, "iter_optimize": False},
    ),
}


def perturbed_weights(factory, seed: int) -> dict:
    torch.manual_seed(seed)
    model = factory(weights=False)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5)
            else:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return {"module." + k: v for k, v in model.state_dict().items()}  # as DDP saves them upstream


def median_confidence(factory, weights, options, images, names, width, height) -> float:
    """A threshold between the two middle coarse confidences (cv2 grey read and resize, as the driver)."""
    import cv2

    tensors = [torch.from_numpy(cv2.resize(cv2.imread(str(images / n), cv2.IMREAD_GRAYSCALE), (width, height)))
               .float()[None, None] / 255 for n in names]
    model = factory(weights=weights, **{**options, "add_matches": 0})
    torch.set_num_threads(1)
    conf = model(*tensors)["coarse_confidence"].sort().values
    assert conf.numel() > 10
    mid = conf.numel() // 2
    return float((conf[mid - 1].double() + conf[mid].double()) / 2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_equal_the_reference(case, semidense_python, shared_dir, tmp_path):
    factory, config, (width, height), overrides, options = CASES[case]
    weights = tmp_path / "weights.pth"
    torch.save(perturbed_weights(factory, seed=3), weights)
    images = shared_dir / "data" / "scannet_superglue" / "images"
    names = ("scene0711_00_frame-001680.jpg", "scene0711_00_frame-001995.jpg")
    if case.endswith("_reversed"):
        names = names[::-1]
    if options.get("add_matches", 0):
        # random weights give near-uniform confidences: densify the less confident half of the matches
        options = {**options, "high_threshold": median_confidence(factory, weights, options, images, names, width,
                                                                  height)}
        overrides = [*overrides, "--high-thresh", repr(options["high_threshold"])]
    out, trace = tmp_path / "oracle.npz", tmp_path / "trace.npz"
    cmd = [semidense_python, os.path.join(HERE, "oracle", "imamatch_trace.py"), str(trace), "--",
           "--config", config, "--weights", str(weights), "--image0", str(images / names[0]),
           "--image1", str(images / names[1]), "--resize", str(width), str(height),
           "--threads", "1", "--out", str(out), *overrides]
    env = {**os.environ, "IMAMATCH_ORACLE_DIR": str(shared_dir / "oracles")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ref, traced = np.load(out), np.load(trace)
    assert not bool(ref["early_exit"]) and traced["step1_query"].shape[0] > 100, f"{case}: too few coarse matches"
    if not options.get("add_matches", 0):  # the consistency check drops (almost) all random-weight matches
        assert ref["query_pts"].shape[0] > 100

    model = factory(weights=weights, **options)
    torch.set_num_threads(1)  # as the driver's --threads 1: same reduction order, bit-identical features (ties)
    result = model(torch.from_numpy(ref["image0"]), torch.from_numpy(ref["image1"]))
    print(f"{case}: {len(ref['query_pts'])} matches, reverse={bool(ref['reverse'])}", file=sys.stderr)

    assert result["reverse"] == bool(ref["reverse"]) == case.endswith("_reversed")
    if options.get("allow_reverse", True):  # the mutual coarse matches and the RANSAC decision
        assert traced["ransac_coords0"].shape[0] > 0
        assert np.array_equal(result["mutual0"].numpy(), traced["ransac_coords0"])
        assert np.array_equal(result["mutual1"].numpy(), traced["ransac_coords1"])
        assert result["coarse_query"].shape[0] >= traced["ransac_coords0"].shape[0]  # one-to-many adds matches
        assert np.array_equal(result["ransac_inliers"].numpy(), traced["ransac_inliers"])
    np.testing.assert_allclose(result["fine_query"].numpy(), traced["step1_query"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(result["fine_reference"].numpy(), traced["step1_reference"], atol=1e-4, rtol=0)
    if options.get("add_matches", 0):
        assert bool(result["densified"].any()) and not bool(result["densified"].all())
    assert result["query"].shape == ref["query_pts"].shape
    for ours, theirs in (("query", "query_pts"), ("reference", "refer_pts"), ("kpts0", "mkpts0_f"),
                         ("kpts1", "mkpts1_f"), ("scores", "mconf")):
        np.testing.assert_allclose(result[ours].numpy(), ref[theirs], atol=1e-4, rtol=0, err_msg=ours)
