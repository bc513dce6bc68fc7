"""The romatch-compatible methods every RoMa-family model offers besides ``match``.

``sample``, ``to_pixel_coordinates``, ``to_normalized_coordinates``, ``match_keypoints``,
``visualize_warp`` behave as in upstream romatch, so code written for it keeps working. Note the one
convention exception (see :mod:`densematch.conventions`): ``to_pixel_coordinates`` puts the top-left
pixel *corner* at (0, 0), as romatch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..conventions import normalized_grid
from ..errors import InputShapeError
from ..sampling import balanced_sample


class RomatchAPI:
    kind = "dense"  # the model contract (densematch.models.contract)
    sample_mode: str = "threshold_balanced"
    sample_thresh: float = 0.05
    kde_stride: int = 1

    def training_forward(self, batch: dict) -> dict:
        """The contract's training forward: ``batch["image0"/"image1"]`` ``(B, 3, H, W)`` prepared by the
        trainer per ``input_spec`` -> ``corresps`` (every scale, as romatch's training forward)."""
        return self({"im_A": batch["image0"], "im_B": batch["image1"]})

    def sample(self, matches: torch.Tensor, certainty: torch.Tensor, num: int = 10000,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Balanced sampling of ``num`` matches from ``match()``'s output (any leading shape; both
        halves of a symmetric warp are pooled). Returns ``(matches (num, 4), certainty (num,))``."""
        mode = self.sample_mode
        return balanced_sample(
            matches, certainty, num,
            threshold=self.sample_thresh if "threshold" in mode else None,
            balanced="balanced" in mode,
            kde_stride=self.kde_stride,
            generator=generator,
        )

    @staticmethod
    def _to_pixel(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return torch.stack((width / 2 * (coords[..., 0] + 1), height / 2 * (coords[..., 1] + 1)), dim=-1)

    def to_pixel_coordinates(self, coords, H_A: int, W_A: int, H_B: int | None = None, W_B: int | None = None):
        """Normalised -> pixel coordinates with the top-left *corner* at (0, 0) (romatch convention).

        ``(..., 2)`` -> one tensor; ``(..., 4)`` or a pair -> ``(kpts_A, kpts_B)``.
        """
        if not isinstance(coords, (list, tuple)) and coords.shape[-1] == 2:
            return self._to_pixel(coords, H_A, W_A)
        kpts_a, kpts_b = coords if isinstance(coords, (list, tuple)) else (coords[..., :2], coords[..., 2:])
        return self._to_pixel(kpts_a, H_A, W_A), self._to_pixel(kpts_b, H_B, W_B)

    def to_normalized_coordinates(self, coords, H_A: int, W_A: int, H_B: int, W_B: int):
        """Inverse of :meth:`to_pixel_coordinates` for a match array ``(..., 4)`` or a pair."""
        kpts_a, kpts_b = coords if isinstance(coords, (list, tuple)) else (coords[..., :2], coords[..., 2:])
        kpts_a = torch.stack((2 / W_A * kpts_a[..., 0] - 1, 2 / H_A * kpts_a[..., 1] - 1), dim=-1)
        kpts_b = torch.stack((2 / W_B * kpts_b[..., 0] - 1, 2 / H_B * kpts_b[..., 1] - 1), dim=-1)
        return kpts_a, kpts_b

    def match_keypoints(self, x_A, x_B, warp, certainty, return_tuple=True, return_inds=False,
                        max_dist=0.005, cert_th=0):
        """Mutual-nearest-neighbour matching of given keypoints through the warp.

        ``x_A`` ``(N, 2)``, ``x_B`` ``(M, 2)`` normalised keypoints; ``warp`` ``(H, W, 4)`` and ``certainty``
        ``(H, W)`` of *one* direction (for a symmetric output pass ``warp[0, :, :W]``, ``certainty[0, :, :W]``).
        """
        if warp.dim() != 3 or warp.shape[-1] != 4 or certainty.dim() != 2:
            raise InputShapeError(
                f"match_keypoints expects an unbatched one-directional warp (H, W, 4) and certainty (H, W), "
                f"got {tuple(warp.shape)} and {tuple(certainty.shape)}; for match() output use "
                "warp[0, :, :W] and certainty[0, :, :W]"
            )
        x_a_to_b = F.grid_sample(warp[..., -2:].permute(2, 0, 1)[None], x_A[None, None], align_corners=False,
                                 mode="bilinear")[0, :, 0].mT
        cert = F.grid_sample(certainty[None, None], x_A[None, None], align_corners=False, mode="bilinear")[0, 0, 0]
        dist = torch.cdist(x_a_to_b, x_B)
        keep = (
            (dist == dist.min(dim=-1, keepdim=True).values)
            & (dist == dist.min(dim=-2, keepdim=True).values)
            & (cert[:, None] > cert_th)
            & (dist < max_dist)
        )
        inds_a, inds_b = torch.nonzero(keep, as_tuple=True)
        if return_tuple:
            return (inds_a, inds_b) if return_inds else (x_A[inds_a], x_B[inds_b])
        return torch.cat((inds_a, inds_b), dim=-1) if return_inds else torch.cat((x_A[inds_a], x_B[inds_b]), dim=-1)

    def visualize_warp(self, warp, certainty, im_A=None, im_B=None, im_A_path=None, im_B_path=None,
                       device=None, symmetric=None, save_path=None, unnormalize=False):
        """Blend B's colours warped onto A (and A's onto B when symmetric) with white by certainty.

        ``warp`` ``(H, 2W, 4)`` (symmetric) or ``(H, W, 4)``; returns ``(3, H, 2W)`` in [0, 1].
        """
        from ..viz import warp_image

        symmetric = self.symmetric if symmetric is None else symmetric
        return warp_image(warp, certainty, im_A, im_B, im_A_path, im_B_path, device=device, symmetric=symmetric,
                          save_path=save_path)

    def conf_from_fb_consistency(self, flow_forward, flow_backward, th=2):
        """1 where the forward-backward cycle error of ``(..., H, W, 2)`` warps is below ``th`` pixels."""
        unbatched = flow_forward.dim() == 3
        if unbatched:
            flow_forward, flow_backward = flow_forward[None], flow_backward[None]
        height, width = flow_forward.shape[-3:-1]
        coords = normalized_grid(height, width, device=flow_forward.device)
        back = F.grid_sample(flow_backward.permute(0, 3, 1, 2), flow_forward, align_corners=False,
                             mode="bilinear").permute(0, 2, 3, 1)
        ok = ((coords - back).norm(dim=-1) < 2 * th / max(height, width)).float()
        return ok[0] if unbatched else ok
