"""S2LD's local-dense stage: windows around the detected keypoints, and the asymmetric fine matching.

Image 0's keypoint stays fixed (the "sparse" side): the centre feature of its window is correlated with the
``W x W`` features of image 1's window, and the soft-argmax of that heatmap refines image 1's keypoint (the
"local dense" side).
"""

from __future__ import annotations

import torch
from torch import nn

from ..semidense.fine_windows import gather_windows
from ..semidense.soft_argmax import spatial_expectation


class FinePreprocess(nn.Module):
    """Crop ``W x W`` windows of the 1/2 map and merge the cell's coarse feature into every entry."""

    def __init__(self, coarse_dim: int = 256, fine_dim: int = 128, window: int = 5, concat_coarse: bool = True):
        super().__init__()
        self.window, self.fine_dim, self.concat_coarse = window, fine_dim, concat_coarse
        if concat_coarse:
            self.down_proj = nn.Linear(coarse_dim, fine_dim, bias=True)
            self.merge_feat = nn.Linear(2 * fine_dim, fine_dim, bias=True)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")

    def forward(self, feat_f0: torch.Tensor, feat_f1: torch.Tensor, feat_c0: torch.Tensor, feat_c1: torch.Tensor,
                centres0: torch.Tensor, centres1: torch.Tensor, b_ids: torch.Tensor, i_ids: torch.Tensor,
                j_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Window features of the matched cells.

        Args:
            feat_f0, feat_f1: ``(B, Cf, H/2, W/2)`` fine maps; feat_c0, feat_c1: ``(B, L|S, Cc)`` coarse features
            after the transformer; centres0, centres1: ``(B, L|S, 2)`` float window centres ``(x, y)`` in 1/2-map
            pixels (rounded half-to-even here, as ``torch.round`` upstream); b_ids, i_ids, j_ids: ``(M,)``.
        Returns:
            ``(M, W*W, Cf)`` for each image.
        """
        ww = self.window ** 2
        if b_ids.numel() == 0:
            empty = feat_f0.new_zeros(0, ww, self.fine_dim)
            return empty, empty.clone()
        win0 = gather_windows(feat_f0, b_ids, centres0[b_ids, i_ids].round().long(), self.window)
        win1 = gather_windows(feat_f1, b_ids, centres1[b_ids, j_ids].round().long(), self.window)
        if not self.concat_coarse:
            return win0, win1
        coarse = self.down_proj(torch.cat([feat_c0[b_ids, i_ids], feat_c1[b_ids, j_ids]], 0))  # (2M, Cf)
        merged = self.merge_feat(torch.cat([torch.cat([win0, win1], 0), coarse[:, None].expand(-1, ww, -1)], -1))
        win0, win1 = torch.chunk(merged, 2, dim=0)
        return win0, win1


def local_dense_expectation(feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``feat0, feat1 (M, W*W, C)`` -> expected offset ``(M, 2)`` in ``[-1, 1]`` of image 1's window and its
    std ``(M,)``: softmax over the window of ``<centre of window 0, window 1> / sqrt(C)``."""
    m, ww, c = feat0.shape
    w = int(round(ww ** 0.5))
    centre = feat0[:, ww // 2, :]
    sim = torch.einsum("mc,mrc->mr", centre, feat1)
    heatmap = torch.softmax((1.0 / c ** 0.5) * sim, dim=1).view(-1, w, w)
    return spatial_expectation(heatmap)
