"""What the sparse and semi-dense XFeat matchers share: the network, the contract methods, the device."""

from __future__ import annotations

import torch
from torch import nn

from ..contract import InputSpec
from .network import XFeatNetwork, image_tensor


class XFeatMatcherBase(nn.Module):
    """A "matches"-kind model around one :class:`XFeatNetwork` (state-dict keys ``net.*``).

    Subclasses implement ``extract_tensor(x) -> features`` and ``match_features(feats0, feats1) -> matches``;
    ``match_images`` is their composition, so many-pair matching can extract once per image.
    """

    kind = "matches"  # the model contract (densematch.models.contract)
    input_spec = InputSpec(channels="rgb", normalisation="unit", size_multiple=32)  # the net averages channels

    def __init__(self, config, network: XFeatNetwork | None = None):
        super().__init__()
        self.config = config
        self.net = network or XFeatNetwork()

    @property
    def device(self) -> torch.device:
        return self.net.skip1[1].weight.device

    @torch.inference_mode()
    def extract(self, image) -> dict[str, torch.Tensor]:
        """Features of one image (path, PIL image or uint8 ``(H, W, 3)`` array); see ``extract_tensor``."""
        return self.extract_tensor(image_tensor(image, self.device))

    def extract_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def match_features(self, feats0: dict, feats1: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def match_images(self, image0, image1) -> dict[str, torch.Tensor]:
        """Match two images (paths, PIL images or uint8 arrays).

        Returns ``kpts0 (M, 2)``, ``kpts1 (M, 2)`` float32 OpenCV pixels of the images as given,
        ``scores (M,)`` and ``idx0``/``idx1 (M,)``, the indices into each image's extracted features.
        """
        return self.match_features(self.extract(image0), self.extract(image1))

    def training_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Raw network outputs for ``batch["image0"]``/``["image1"]`` ``(B, C, H, W)`` (H, W multiples of 32):
        ``feats{0,1} (B, 64, H/8, W/8)``, ``keypoint_logits{0,1} (B, 65, H/8, W/8)``,
        ``heatmap{0,1} (B, 1, H/8, W/8)``. No training recipe is registered for XFeat."""
        out = {}
        for i in (0, 1):
            feats, logits, heatmap = self.net(batch[f"image{i}"])
            out.update({f"feats{i}": feats, f"keypoint_logits{i}": logits, f"heatmap{i}": heatmap})
        return out


__all__ = ["XFeatMatcherBase"]
