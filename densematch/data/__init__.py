"""Training and evaluation datasets.

Every pair dataset yields a dict (the *pair sample* format the trainer and losses consume)::

    image0, image1   (3, H, W) float32 RGB in [0, 1] (no ImageNet normalisation; models normalise)
    warp0            (H, W, 2) float32: for each pixel of image0, its match in image1 in *normalised*
                     coordinates (densematch.conventions), meaningful where valid0 is true
    valid0           (H, W) bool: pixel of image0 has a known, covisible, non-hole correspondence
    K0, K1           (3, 3) float32 intrinsics at (H, W)            [when the pair has cameras]
    T_0to1           (4, 4) float32 camera-0 -> camera-1            [when the pair has cameras]
    depth0, depth1   (H, W) float32, 0 = unknown                    [when the pair has depth]

Batches are the default-collated dicts (leading batch dimension B).
"""
