"""Tiny RoMa v1: XFeat features, a coarse correlation-volume match at stride 8 and two conv refiners.

The network and its numerics follow ``romatch/models/tiny.py`` (romatch 0.1.2) exactly, including
these quirks of the published code, which the checkpoint was evaluated with:

* **/32 input rounding.** Both images are bilinearly resized (align_corners=False, no antialias) to
  ``(H // 32 * 32, W // 32 * 32)`` before the backbone; nothing is padded or cropped.
* **Approximate softmax with an index logit.** At inference (``exact_softmax=False``) the coarse warp
  is a softmax expectation over B's cells subsampled by 4 in each axis, plus one extra slot whose
  *logit is the argmax index* (an integer, converted to float) of the full correlation volume, not the
  maximum correlation. The extra slot's probability multiplies the centre of the argmax cell. Because
  the index is usually large, that slot usually dominates. The subsampled cells take the *first* cell of
  each 4x4 block, but their coordinates are the *centre* of the block (``linspace(-1 + 4/W, 1 - 4/W, W/4)``).
* **Refiner scale.** Refiner outputs ``(dx, dy, dc)`` are multiplied by ``(2 / W_B, 2 / H_B, 1)`` with
  B's /32-rounded image size, i.e. the displacements are in pixels of B.
* **Output at the original size of A, not clamped.** ``match`` bilinearly resizes the stride-4 flow and
  certainty logit to A's input size. Unlike RoMa, matches outside ``[-1, 1]`` are neither clamped nor
  given zero certainty, and the output is one-directional (``symmetric = False``).

Deviations from upstream, all outside the numbers: images are converted to RGB before the grey mean
(upstream averages whatever channels the file has, alpha included); batches of more than one pair
are matched correctly (upstream broadcasts the extra slot's probability ``(B, h, w)`` against the
coordinate axis of ``(B, 2, h, w)``: for B = 2, pair b's y (b = 0) or x (b = 1) is weighted with the
*other* pair's probability, which is usually close to 1 for both, so the error is small; B > 2
raises. For B = 1 both agree); the peak memory of the coarse match is bounded by processing A's
cells in chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.xfeat import BasicLayer, XFeatBackbone
from ...conventions import normalized_grid
from ...errors import InputShapeError
from ...io import load_image
from ...registry import WeightFile
from ...weights import load_strict, read_state_dict
from ..api import RomatchAPI
from ..contract import InputSpec
from ..preprocess import to_tensor

SAMPLE_MODES = ("threshold_balanced", "threshold", "balanced", "")


@dataclass(frozen=True)
class TinyRomaArchitecture:
    """What the weights depend on. The defaults are the published ``tiny_roma_v1_outdoor`` network."""

    coarse_match_dim: int = 256  # width of the stride-8 refiner (input 64 + 64 + 2 channels)
    fine_match_dim: int = 64  # width of the stride-4 refiner (input 24 + 24 + 2 channels)
    refiner_layers: int = 4  # BasicLayers per refiner before the 1x1 output conv


@dataclass(frozen=True)
class TinyRomaSettings:
    """Behaviour that the weights do not depend on. Change it on a built model through ``model.settings``
    or the romatch-named attributes ``exact_softmax``, ``sample_mode`` and ``sample_thresh``."""

    exact_softmax: bool = False  # full softmax over B's cells (training behaviour); False = published approx.
    softmax_stride: int = 4  # B's cells are subsampled by this per axis in the approximate softmax
    input_multiple: int = 32  # images are resized down to multiples of this (upstream: 32)
    freeze_xfeat: bool = False  # no gradient through the backbone in training (published model: fine-tuned)
    sample_mode: str = "threshold_balanced"  # "threshold_balanced", "threshold", "balanced" or ""
    sample_thresh: float = 0.05  # certainties above this count as 1 when sampling
    coarse_chunk: int = 256  # A cells per chunk of the coarse correlation (0 = all). 256 keeps a chunk's
    # volume (h1 w1 x 256 floats, 4.9 MB at 480x640) near the L2 cache: faster than larger chunks on CPU
    max_side: int = 0  # match(): images with a longer side are first downscaled to it (0 = never, upstream)

    def __post_init__(self):
        if self.sample_mode not in SAMPLE_MODES:
            raise ValueError(f"sample_mode must be one of {SAMPLE_MODES}, got {self.sample_mode!r}")
        if self.softmax_stride < 1 or self.input_multiple < 8 or self.input_multiple % 8:
            raise ValueError(f"softmax_stride must be >= 1 and input_multiple a multiple of 8 (>= 8), got "
                             f"{self.softmax_stride} and {self.input_multiple}")
        if self.coarse_chunk < 0:
            raise ValueError(f"coarse_chunk must be >= 0, got {self.coarse_chunk}")
        if self.max_side != 0 and self.max_side < self.input_multiple:
            raise ValueError(f"max_side must be 0 or >= input_multiple, got {self.max_side}")


@dataclass(frozen=True)
class TinyRomaImageFeatures:
    """What :meth:`TinyRoMa.extract` keeps of one image.

    Attributes:
        fine: ``(1, 24, h / 4, w / 4)`` and ``coarse``: ``(1, 64, h / 8, w / 8)`` XFeat features of the image
            resized to ``network_size`` ``(h, w)`` (its size rounded down to multiples of 32).
        size: ``(H, W)`` of the image the warp is returned at (after ``settings.max_side``).
    """

    fine: torch.Tensor
    coarse: torch.Tensor
    size: tuple[int, int]
    network_size: tuple[int, int]


def _refiner(in_channels: int, width: int, layers: int) -> nn.Sequential:
    """``layers`` BasicLayers (3x3) then a biased 1x1 conv to ``(dx, dy, dc)``; keys ``{0..layers}``."""
    blocks = [BasicLayer(in_channels if i == 0 else width, width) for i in range(layers)]
    return nn.Sequential(*blocks, nn.Conv2d(width, 3, kernel_size=1, bias=True, padding=0))


def _setting(name: str) -> property:
    return property(lambda self: getattr(self.settings, name),
                    lambda self, value: setattr(self, "settings", replace(self.settings, **{name: value})))


class TinyRoMa(nn.Module, RomatchAPI):
    """Tiny RoMa v1. State dict keys: ``xfeat.0.*`` (the backbone), ``coarse_matcher.*``, ``fine_matcher.*``.

    Use :meth:`match` for images; :meth:`forward` is the batch entry point returning every scale.
    """

    symmetric = False  # the output is A -> B only
    input_spec = InputSpec(channels="rgb", normalisation="unit", size_multiple=32)

    def __init__(self, arch: TinyRomaArchitecture = TinyRomaArchitecture(),
                 settings: TinyRomaSettings = TinyRomaSettings()):
        super().__init__()
        self.arch = arch
        self.settings = settings
        backbone = XFeatBackbone()
        self.xfeat = nn.ModuleList([backbone])  # upstream's layout with freeze_xfeat=False: keys "xfeat.0."
        fine, coarse = backbone.fine_channels, backbone.coarse_channels
        self.coarse_matcher = _refiner(2 * coarse + 2, arch.coarse_match_dim, arch.refiner_layers)
        self.fine_matcher = _refiner(2 * fine + 2, arch.fine_match_dim, arch.refiner_layers)
        for module in self.modules():  # match(): BatchNorm folded into the convs (see BasicLayer)
            if isinstance(module, BasicLayer):
                module.fold_batchnorm = True

    exact_softmax = _setting("exact_softmax")
    sample_mode = _setting("sample_mode")
    sample_thresh = _setting("sample_thresh")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def kde_stride(self) -> int:
        """Upstream's sampling: exact KDE on CUDA, against every 8th candidate on CPU."""
        return 1 if self.device.type == "cuda" else 8

    def train(self, mode: bool = True) -> TinyRoMa:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (its BatchNorm statistics fixed).

        Upstream keeps a frozen XFeat out of the module tree (``self.xfeat = [xfeat]``), so ``train()`` never
        reaches it; here it is a registered child (for the checkpoint keys) and is held in eval mode instead.
        """
        super().train(mode)
        if self.settings.freeze_xfeat:
            self.xfeat.eval()
        return self

    # --- network ------------------------------------------------------------------------------------
    def resize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H // m * m, W // m * m)``, bilinear without antialias.

        ``m`` is ``settings.input_multiple`` (32, as upstream).
        """
        m = self.settings.input_multiple
        height, width = x.shape[-2:]
        if height < m or width < m:
            raise InputShapeError(f"Tiny RoMa needs images of at least {m}x{m} pixels, got {height}x{width}")
        size = (height // m * m, width // m * m)
        if size == (height, width):  # bilinear resizing to the same size is the identity (and a copy)
            return x
        return F.interpolate(x, size, mode="bilinear", align_corners=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features ``(fine (B, 24, H/4, W/4), coarse (B, 64, H/8, W/8))`` of resized images."""
        frozen = self.settings.freeze_xfeat or not self.training
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.xfeat[0](x)

    def coarse_warp(self, feat_a: torch.Tensor, feat_b: torch.Tensor) -> torch.Tensor:
        """Softmax expectation of B's cell centres under the correlation of each A cell with all B cells.

        ``feat_a`` ``(B, C, h0, w0)``, ``feat_b`` ``(B, C, h1, w1)`` -> warp ``(B, 2, h0, w0)`` (normalised).
        The correlation is ``<f_A, f_B> / sqrt(C)``; see the module docstring for the approximate softmax.
        A's cells are processed ``coarse_chunk`` at a time, so the volume never exceeds
        ``h1 * w1 * coarse_chunk`` values.
        """
        b, c, h0, w0 = feat_a.shape
        _, _, h1, w1 = feat_b.shape
        flat_a, flat_b = feat_a.reshape(b, c, h0 * w0), feat_b.reshape(b, c, h1 * w1)
        grid = normalized_grid(h1, w1, device=feat_a.device).reshape(h1 * w1, 2)
        approximate = not self.training and not self.settings.exact_softmax
        if approximate:
            low_index, low_grid = self._subsampled_cells(h1, w1, feat_a.device)
        # Dividing by sqrt(C) is exact when it is a power of two (C = 64: 8), so the argmax can be taken on
        # the raw products and only the subsampled logits divided; otherwise the whole volume is divided
        # first so that rounding cannot create ties the raw volume does not have.
        root = math.sqrt(c)
        exact_scale = approximate and root == 2 ** round(math.log2(root))
        chunk = self.settings.coarse_chunk or h0 * w0
        out = []
        for start in range(0, h0 * w0, chunk):
            # (B, h1 w1, n): the same products as upstream's einsum("bci,bcj->bji"), without its copies
            corr = torch.bmm(flat_b.transpose(1, 2), flat_a[..., start : start + chunk])
            if approximate:
                if not exact_scale:
                    corr = corr / root
                best = self._first_argmax(corr, h1, w1)  # (B, n)
                low = corr[:, low_index] / root if exact_scale else corr[:, low_index]
                logits = torch.cat((low, best[:, None].to(corr.dtype)), dim=1)
                p = logits.softmax(dim=1)
                warp = torch.einsum("bcn,cd->bdn", p[:, :-1], low_grid)
                warp += p[:, None, -1] * grid[best].permute(0, 2, 1)
            else:
                warp = torch.einsum("bcn,cd->bdn", (corr / root).softmax(dim=1), grid)
            out.append(warp)
        return torch.cat(out, dim=-1).reshape(b, 2, h0, w0)

    @staticmethod
    def _first_argmax(corr: torch.Tensor, h1: int, w1: int) -> torch.Tensor:
        """``corr.argmax(dim=1)`` for ``corr`` ``(B, h1 w1, n)``, several times faster on CPU.

        A reduction over the strided dim 1 is slow; the maximum over each row of B's grid (dim 2 of the
        ``(B, h1, w1, n)`` view, vectorised along n) is not. The first row holding the overall maximum,
        then the first column of that row holding it, is exactly the first flat index of the maximum.
        """
        rows_view = corr.view(corr.shape[0], h1, w1, corr.shape[-1])
        row = rows_view.amax(dim=2).argmax(dim=1)  # (B, n)
        in_row = rows_view.gather(1, row[:, None, None, :].expand(-1, 1, w1, -1))[:, 0]  # (B, w1, n)
        return row * w1 + in_row.argmax(dim=1)

    def _subsampled_cells(self, h1: int, w1: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices of B's cells ``[::s, ::s]`` and the coordinates upstream assigns to them."""
        s = self.settings.softmax_stride
        if h1 % s or w1 % s:
            raise InputShapeError(f"the approximate softmax needs a coarse grid divisible by {s}, "
                                  f"got {h1}x{w1}")
        rows = torch.arange(0, h1, s, device=device)
        cols = torch.arange(0, w1, s, device=device)
        index = (rows[:, None] * w1 + cols[None, :]).reshape(-1)
        xs = torch.linspace(-1 + s / w1, 1 - s / w1, w1 // s, device=device)
        ys = torch.linspace(-1 + s / h1, 1 - s / h1, h1 // s, device=device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return index, torch.stack((gx, gy), dim=-1).reshape(-1, 2)

    @staticmethod
    def _refine(refiner: nn.Module, feat_a: torch.Tensor, feat_b: torch.Tensor, matches: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
        """``matches`` ``(B, 3, h, w)`` = (x, y, certainty logit) -> refined matches, same shape."""
        coords = matches[:, :2].permute(0, 2, 3, 1)
        warped = F.grid_sample(feat_b, coords, mode="bilinear", align_corners=False)
        delta = refiner(torch.cat((feat_a, warped, matches[:, :2]), dim=1))
        return matches + delta * scale

    def forward(self, batch: dict) -> dict:
        """Match ``batch["im_A"]`` ``(B, C, H_A, W_A)`` to ``batch["im_B"]`` ``(B, C, H_B, W_B)`` in [0, 1].

        Returns ``{8: {"flow", "certainty"}, 4: {"flow", "certainty"}}`` at A's stride-8 and stride-4
        grids (of the /32-resized image): ``flow`` ``(B, 2, h, w)`` normalised positions in B,
        ``certainty`` ``(B, 1, h, w)`` logits.
        """
        im_a, im_b = self.resize_input(batch["im_A"]), self.resize_input(batch["im_B"])
        if im_a.shape[-2:] == im_b.shape[-2:]:
            fine, coarse = self.features(torch.cat((im_a, im_b), dim=0))
            (fine_a, fine_b), (coarse_a, coarse_b) = fine.chunk(2), coarse.chunk(2)
        else:
            fine_a, coarse_a = self.features(im_a)
            fine_b, coarse_b = self.features(im_b)
        return self._match_backbone_features(fine_a, coarse_a, fine_b, coarse_b, im_b.shape[-2:])

    def _match_backbone_features(self, fine_a, coarse_a, fine_b, coarse_b, size_b) -> dict:
        """:meth:`forward` from the backbone features of the resized images; ``size_b``: B's resized (H, W)."""
        h1, w1 = size_b
        scale = torch.tensor((2 / w1, 2 / h1, 1), device=coarse_a.device)[None, :, None, None]
        warp = self.coarse_warp(coarse_a, coarse_b)
        matches = torch.cat((warp, torch.zeros_like(warp[:, -1:])), dim=1)
        matches = self._refine(self.coarse_matcher, coarse_a, coarse_b, matches, scale)
        corresps = {8: {"flow": matches[:, :2], "certainty": matches[:, 2:]}}
        matches = F.interpolate(matches, size=fine_a.shape[-2:], mode="bilinear", align_corners=False)
        matches = matches.detach()
        matches = self._refine(self.fine_matcher, fine_a, fine_b, matches, scale)
        corresps[4] = {"flow": matches[:, :2], "certainty": matches[:, 2:]}
        return corresps

    # --- inference ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def match(self, im_A_input, im_B_input, *args, batched: bool = True, device=None):
        """Dense matching of image A to image B.

        Args:
            im_A_input, im_B_input: file paths, PIL images, or tensors ``(B, C, H, W)`` with C = 1 or 3 and
                values in [0, 1] (no ImageNet normalisation). A and B may differ in size; each side must
                be at least 32 pixels. Extra positional arguments are ignored (as upstream).
            batched: for tensor input, keep the batch dimension (default). Path and PIL input always
                returns unbatched outputs, as upstream (which ignores ``batched`` there).
            device: where to run (default: the model's device).

        Returns:
            ``warp`` ``(B, H_A, W_A, 4)`` = ``(x_A, y_A, x_B, y_B)`` normalised, at A's input size (after
            the ``settings.max_side`` downscaling, when set), not clamped; ``certainty`` ``(B, H_A, W_A)``
            in [0, 1]. For path / PIL input, or tensors with ``batched=False``: ``warp[0]`` ``(H_A, W_A, 4)``
            and ``certainty[0]`` ``(H_A, W_A)``, exactly the shapes upstream returns for each input type.
        """
        self.train(False)
        device = torch.device(device) if device is not None else self.device
        im_a, im_b = (self._limit_side(x) for x in self._inputs(im_A_input, im_B_input, device))
        b, _, height, width = im_a.shape
        if not isinstance(im_A_input, torch.Tensor):
            batched = False  # upstream: path and PIL input give (H, W, 4), whatever ``batched`` says
        corresps = self.forward({"im_A": im_a, "im_B": im_b})
        return self._warp(corresps, height, width, batched)

    @torch.inference_mode()
    def extract(self, image, device=None) -> TinyRomaImageFeatures:
        """The per-image part of :meth:`match` for one image (path or PIL image): its input size and XFeat
        features. Many-pair matching keeps these per image; :meth:`match_features` does the rest."""
        self.train(False)
        device = torch.device(device) if device is not None else self.device
        x = self._limit_side(to_tensor(load_image(image))[None].to(device, next(self.parameters()).dtype))
        resized = self.resize_input(x)
        fine, coarse = self.features(resized)
        return TinyRomaImageFeatures(fine, coarse, tuple(x.shape[-2:]), tuple(resized.shape[-2:]))

    @torch.inference_mode()
    def match_features(self, features_A: TinyRomaImageFeatures, features_B: TinyRomaImageFeatures):
        """:meth:`match` of the two images behind two :meth:`extract` outputs: the same ``(warp, certainty)``,
        ``(H_A, W_A, 4)`` and ``(H_A, W_A)`` as for path / PIL input."""
        self.train(False)
        a, b = features_A, features_B
        corresps = self._match_backbone_features(a.fine, a.coarse, b.fine, b.coarse, b.network_size)
        return self._warp(corresps, *a.size, batched=False)

    @staticmethod
    def _warp(corresps: dict, height: int, width: int, batched: bool):
        """``(warp, certainty)`` at A's size from the stride-4 output of :meth:`forward`."""
        flow = F.interpolate(corresps[4]["flow"], size=(height, width), mode="bilinear", align_corners=False)
        certainty = F.interpolate(corresps[4]["certainty"], size=(height, width), mode="bilinear",
                                  align_corners=False)
        b = flow.shape[0]
        warp = torch.empty(b, height, width, 4, device=flow.device, dtype=flow.dtype)
        warp[..., :2] = normalized_grid(height, width, device=flow.device, dtype=flow.dtype)
        warp[..., 2:] = flow.permute(0, 2, 3, 1)
        certainty = certainty[:, 0].sigmoid()
        return (warp, certainty) if batched else (warp[0], certainty[0])

    def sample(self, matches: torch.Tensor, certainty: torch.Tensor, num: int = 5000,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Balanced sampling as :meth:`RomatchAPI.sample`, with Tiny RoMa's default ``num=5000``."""
        return super().sample(matches, certainty, num=num, generator=generator)

    def _limit_side(self, x: torch.Tensor) -> torch.Tensor:
        """Downscale ``(B, C, H, W)`` (antialiased bilinear) so that its longer side is ``settings.max_side``."""
        side = self.settings.max_side
        height, width = x.shape[-2:]
        if not side or max(height, width) <= side:
            return x
        scale = side / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)

    def _inputs(self, im_a, im_b, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Paths / PIL images -> ``(1, 3, H, W)`` in [0, 1]; tensors are checked. Both go to ``device`` and
        the weights' dtype (float32 unless the model was converted)."""
        dtype = next(self.parameters()).dtype
        tensors = isinstance(im_a, torch.Tensor), isinstance(im_b, torch.Tensor)
        if not any(tensors):
            return tuple(to_tensor(load_image(image))[None].to(device, dtype) for image in (im_a, im_b))
        if not all(tensors):
            raise InputShapeError("pass both images as tensors, or both as paths / PIL images")
        for name, t in (("im_A", im_a), ("im_B", im_b)):
            if t.dim() != 4 or t.shape[1] not in (1, 3):
                raise InputShapeError(f"{name} must be a (B, 3, H, W) or (B, 1, H, W) tensor, "
                                      f"got shape {tuple(t.shape)}")
            if not t.is_floating_point():
                raise InputShapeError(f"{name} must be a floating-point tensor in [0, 1], got {t.dtype}")
        if im_a.shape[0] != im_b.shape[0]:
            raise InputShapeError(f"im_A and im_B must have the same batch size, got {im_a.shape[0]} and "
                                  f"{im_b.shape[0]}")
        return im_a.to(device, dtype), im_b.to(device, dtype)


def build_tiny_roma(device="cpu", weights=None, spec: WeightFile | None = None,
                    arch: TinyRomaArchitecture | None = None, exact_softmax: bool = False,
                    sample_mode: str = "threshold_balanced", sample_thresh: float = 0.05,
                    freeze_xfeat: bool = False, coarse_chunk: int = 256, max_side: int = 0,
                    name: str = "tiny_roma_v1_outdoor",
                    download: bool = True, **unknown) -> TinyRoMa:
    """Build Tiny RoMa and load its weights strictly.

    ``weights``: None (the published file of ``spec``, downloaded once into the torch hub cache), a local
    path, a state dict, or False (random initialisation). XFeat's weights are part of the checkpoint
    (keys ``xfeat.0.*``), so unlike upstream no ``xfeat=`` model and no torch.hub call are needed.
    """
    if "xfeat" in unknown:
        raise TypeError("xfeat= is not needed: the XFeat backbone is built in and its weights are in the "
                        "Tiny RoMa checkpoint (keys 'xfeat.0.*')")
    if unknown:
        raise TypeError(f"unknown argument(s) for {name}: {', '.join(sorted(unknown))}")
    settings = TinyRomaSettings(
        exact_softmax=exact_softmax, sample_mode=sample_mode, sample_thresh=sample_thresh,
        freeze_xfeat=freeze_xfeat, coarse_chunk=coarse_chunk, max_side=max_side,
    )
    model = TinyRoMa(arch or TinyRomaArchitecture(), settings)
    model.name = name
    if weights is not False:
        state = read_state_dict(weights, what=name, spec=spec, download=download)
        load_strict(model, state, what=name)
    return model.to(torch.device(device)).eval()


__all__ = ["TinyRoMa", "TinyRomaArchitecture", "TinyRomaSettings", "build_tiny_roma"]
