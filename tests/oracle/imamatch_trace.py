"""Run the shared IMAMatch oracle driver (``shared/oracles/run_imamatch.py``) under the reference venv and
record the intermediate values that upstream's ``forward_test`` does not return.

Usage: ``python imamatch_trace.py TRACE.npz -- <run_imamatch.py arguments>``

Nothing in the upstream computation changes: ``cv2.findFundamentalMat`` and ``F.grid_sample`` are
wrapped to record their inputs/outputs and return exactly what the originals return. Recorded:

* ``ransac_coords0/1 (Nc, 2)``: the mutual-nearest coarse matches (cells) given to the direction RANSAC,
  ``ransac_inliers (Nc,)`` its mask (absent without ``allow_reverse``);
* ``step1_query/step1_reference (Nf, 2)``: centres of the first two ``grid_sample`` calls (the step-1
  7x7 windows), de-normalised to 1/2-resolution pixels: the densified queries and reference start points.
"""

import os
import sys

import numpy as np


def main():
    out_path, sep, *driver_args = sys.argv[1:]
    if sep != "--":
        raise SystemExit(__doc__)
    driver_args = [a for a in driver_args]
    shared_oracles = os.environ["IMAMATCH_ORACLE_DIR"]
    sys.path.insert(0, shared_oracles)
    import cv2
    import run_imamatch
    import torch.nn.functional as F

    record = {}
    find_fm, grid_sample = cv2.findFundamentalMat, F.grid_sample

    def traced_find_fm(p0, p1, *args, **kwargs):
        result = find_fm(p0, p1, *args, **kwargs)
        record["ransac_coords0"], record["ransac_coords1"] = np.array(p0), np.array(p1)
        if result[1] is not None:
            record["ransac_inliers"] = result[1].reshape(-1).astype(bool)
        return result

    calls = []

    def traced_grid_sample(feature, grid, *args, **kwargs):
        if len(calls) < 2:
            h, w = feature.shape[-2:]
            g = grid[0].detach().double().numpy()
            centre = g[:, g.shape[1] // 2]
            calls.append(np.stack([(centre[:, 0] + 1) / 2 * (w - 1), (centre[:, 1] + 1) / 2 * (h - 1)], axis=-1))
        return grid_sample(feature, grid, *args, **kwargs)

    cv2.findFundamentalMat = traced_find_fm
    F.grid_sample = traced_grid_sample
    run_imamatch.main(driver_args)
    if len(calls) == 2:
        record["step1_query"], record["step1_reference"] = calls
    np.savez(out_path, **record)


if __name__ == "__main__":
    main()
