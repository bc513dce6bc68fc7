"""Typed configuration of RoMa: the architecture (must match a checkpoint) and the inference settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...defaults import ROMA_COARSE_RES, ROMA_UPSAMPLE_RES

# scale -> (input channels of the projection, output channels)
PROJ_DIMS = {16: (1024, 512), 8: (512, 512), 4: (256, 256), 2: (128, 64), 1: (64, 9)}
# scale -> displacement-embedding width
DISP_EMB_DIMS = {16: 128, 8: 64, 4: 32, 2: 16, 1: 6}
# scale -> local-correlation radius (0 = none)
LOCAL_CORR_RADIUS = {16: 7, 8: 3, 4: 2, 2: 0, 1: 0}


@dataclass(frozen=True)
class RomaArchitecture:
    """What the weights depend on. The defaults are the published RoMa outdoor/indoor/L2M++ network."""

    dinov2: str = "vitl14"  # DINOv2 variant for the coarse features (densematch.backbones.DINOV2_CONFIGS)
    proj_dims: dict = field(default_factory=lambda: dict(PROJ_DIMS))
    disp_emb_dims: dict = field(default_factory=lambda: dict(DISP_EMB_DIMS))
    local_corr_radius: dict = field(default_factory=lambda: dict(LOCAL_CORR_RADIUS))
    gp_temperature: float = 0.2  # cosine kernel temperature T in exp((cos - 1) / T)
    gp_sigma_noise: float = 0.1  # GP observation noise added to the kernel diagonal
    decoder_depth: int = 5  # transformer blocks of the match decoder
    decoder_heads: int = 8
    anchors: int = 64  # the decoder classifies over an anchors x anchors grid of B
    refiner_blocks: int = 8  # hidden blocks per refiner (after block1)
    refiner_kernel: int = 5  # depthwise kernel size
    bn_momentum: float = 0.01  # refiner BatchNorm momentum (training only)

    def refiner_width(self, scale: int) -> int:
        """Input (= hidden) width of the refiner at ``scale``: features of A and warped B, embedding, corr."""
        radius = self.local_corr_radius[scale]
        corr = (2 * radius + 1) ** 2 if radius else 0
        return 2 * self.proj_dims[scale][1] + self.disp_emb_dims[scale] + corr


@dataclass(frozen=True)
class RomaSettings:
    """Inference settings (frozen): change them on a built model with
    ``model.apply_settings(dataclasses.replace(model.settings, ...))``, which validates them, or through the
    romatch attribute names on the model itself (``h_resized``, ``w_resized``, ``upsample_res``,
    ``upsample_preds``, ``symmetric``, ``sample_thresh``).
    """

    coarse_res: tuple[int, int] = (ROMA_COARSE_RES, ROMA_COARSE_RES)  # (H, W) of the coarse pass; multiples of 14
    upsample_res: tuple[int, int] = (ROMA_UPSAMPLE_RES, ROMA_UPSAMPLE_RES)  # (H, W) of the refinement-only second pass
    upsample_preds: bool = True  # run the second pass at upsample_res
    symmetric: bool = True  # match A->B and B->A in one batch
    attenuate_cert: bool = True  # add back half of negative coarse certainty logits (upstream default)
    sample_thresh: float = 0.05  # certainties above this count as 1 when sampling
    sample_mode: str = "threshold_balanced"  # "threshold_balanced", "threshold", "balanced" or ""
    amp_dtype: object = None  # CUDA autocast dtype of the DINOv2 weights; None = fp32 everywhere
    gp_solver: str = "cholesky"  # "cholesky" (romatch 0.1.2) or "inverse" (older snapshots, training)
    train_resolution: int = ROMA_COARSE_RES  # "train_resolution" mode: displacement scale factor = sqrt(h * w) / this
    # how the refiners' displacement-embedding scale factor is computed:
    #   "train_resolution" (romatch 0.1.2): sqrt(h * w) / train_resolution in both passes
    #   "coarse_relative" (older RoMa snapshots, as used by L2M++): 1 in the coarse pass and
    #   sqrt(upsample area / coarse area) in the upsampling pass
    scale_factor_mode: str = "train_resolution"
