"""Default sizes and counts shared by the library and every command, stated once.

Import-free (plain constants) so the command line can read them without loading torch.
"""

from __future__ import annotations

SIFT_NUM_KEYPOINTS = 8192  # keypoints per image for SIFT (benchmark, match, match-pairs, retrieval)
DENSE_NUM_MATCHES = 5000  # correspondences sampled per pair from a dense model, as in the RoMa benchmarks

ROMA_COARSE_RES = 560  # RoMa's published coarse resolution (side of the square, multiple of 14)
ROMA_UPSAMPLE_RES = 864  # RoMa's published refinement resolution

ESTIMATORS = ("opencv-ransac", "opencv-magsac", "poselib")  # robust estimators of densematch.geometry.robust
