"""Two-view geometry: robust E / F / H estimation, pose and homography errors, GT warps from depth.

Every function takes OpenCV pixel coordinates (:mod:`densematch.conventions`); ``T_0to1`` maps
camera-0 points into camera 1 and ``H_0to1`` maps image-0 pixels to image-1 pixels. Matches from
:class:`densematch.Matches` are already in this convention. Pixel coordinates from the
romatch-compatible ``model.to_pixel_coordinates`` have the top-left *corner* at ``(0, 0)``: subtract
0.5 (or use :func:`densematch.conventions.normalized_to_pixel` on the normalised matches) first.
"""

from .camera import mean_focal, normalize_points, rescale_intrinsics, rescale_pixels
from .epipolar import (
    FundamentalEstimate,
    epipolar_precision,
    essential_from_pose,
    estimate_fundamental,
    fundamental_from_pose,
    sampson_distance,
    symmetric_epipolar_distance,
)
from .homography import (
    HomographyEstimate,
    apply_homography,
    estimate_homography,
    homography_corner_error,
    homography_from_plane,
)
from .pose import (
    RelativePose,
    estimate_relative_pose,
    relative_pose_error,
    rotation_error_deg,
    translation_error_deg,
)
from .robust import ESTIMATORS, RansacConfig
from .warps import warp_from_depth

__all__ = [
    "ESTIMATORS",
    "FundamentalEstimate",
    "HomographyEstimate",
    "RansacConfig",
    "RelativePose",
    "apply_homography",
    "epipolar_precision",
    "essential_from_pose",
    "estimate_fundamental",
    "estimate_homography",
    "estimate_relative_pose",
    "fundamental_from_pose",
    "homography_corner_error",
    "homography_from_plane",
    "mean_focal",
    "normalize_points",
    "relative_pose_error",
    "rescale_intrinsics",
    "rescale_pixels",
    "rotation_error_deg",
    "sampson_distance",
    "symmetric_epipolar_distance",
    "translation_error_deg",
    "warp_from_depth",
]
