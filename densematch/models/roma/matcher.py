"""RoMa: the dense matcher network and its ``match`` method (romatch ``RegressionMatcher``)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...conventions import normalized_grid
from ...defaults import ROMA_COARSE_RES, ROMA_UPSAMPLE_RES
from ...errors import ConfigError, InputShapeError
from ...io import load_image
from ...registry import WeightFile
from ...weights import load_strict, read_state_dict
from ..api import RomatchAPI
from ..contract import InputSpec
from ..preprocess import imagenet_normalize, to_tensor
from .config import RomaArchitecture, RomaSettings
from .decoder import Decoder
from .encoder import RomaEncoder


@dataclass(frozen=True)
class RomaImageFeatures:
    """What :meth:`RoMa.extract` keeps of one image (batch 1), or of a batch of images (:meth:`stack`).

    Attributes:
        coarse: ``(B, 3, *coarse_res)`` the ImageNet-normalised network input of the coarse pass.
        high: ``(B, 3, *upsample_res)`` that of the upsampling pass; None without ``upsample_preds``.
        dinov2: ``(B, C, h, w)`` DINOv2's map of ``coarse`` (``h, w`` = coarse size / 14).
    """

    coarse: torch.Tensor
    high: torch.Tensor | None
    dinov2: torch.Tensor

    @staticmethod
    def stack(items: list[RomaImageFeatures]) -> RomaImageFeatures:
        """One batch from single-image features, in order."""
        high = None if items[0].high is None else torch.cat([f.high for f in items])
        return RomaImageFeatures(torch.cat([f.coarse for f in items]), high,
                                 torch.cat([f.dinov2 for f in items]))


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


class RoMa(nn.Module, RomatchAPI):
    """RoMa dense matcher. State dict keys: ``encoder.cnn.*``, ``decoder.*`` (the published layout).

    Use :meth:`match` for images; :meth:`forward` is the training/batch entry point.
    """

    input_spec = InputSpec(channels="rgb", normalisation="imagenet", size_multiple=14)

    def __init__(self, arch: RomaArchitecture | None = None, settings: RomaSettings | None = None):
        super().__init__()
        arch = arch or RomaArchitecture()
        self.arch = arch
        self.encoder = RomaEncoder(arch.dinov2)
        self.decoder = Decoder(arch)
        self.apply_settings(settings or RomaSettings())

    # --- settings (romatch attribute names kept for drop-in use) -------------------------------------
    def apply_settings(self, settings: RomaSettings | None = None) -> None:
        """Validate ``settings`` (default: the current ones), make them current, and push dtype / solver
        choices to the submodules. Invalid settings raise and leave the model unchanged."""
        s = settings or self.settings
        s = replace(s, coarse_res=_pair(s.coarse_res), upsample_res=_pair(s.upsample_res))
        patch = self.encoder.dinov2.config.patch_size
        if s.coarse_res[0] % patch or s.coarse_res[1] % patch:
            raise InputShapeError(f"coarse resolution {s.coarse_res} must be a multiple of {patch} in both sides")
        if s.scale_factor_mode not in ("train_resolution", "coarse_relative"):
            raise ConfigError(f"scale_factor_mode must be 'train_resolution' or 'coarse_relative', "
                              f"got {s.scale_factor_mode!r}")
        if s.gp_solver not in ("cholesky", "inverse"):
            raise ConfigError(f"gp_solver must be 'cholesky' or 'inverse', got {s.gp_solver!r}")
        self.settings = s
        self.encoder.amp_dtype = s.amp_dtype
        self.decoder.set_amp_dtype(s.amp_dtype)
        self.decoder.gps["16"].solver = s.gp_solver

    h_resized = property(lambda self: self.settings.coarse_res[0],
                         lambda self, v: self._set(coarse_res=(int(v), self.settings.coarse_res[1])))
    w_resized = property(lambda self: self.settings.coarse_res[1],
                         lambda self, v: self._set(coarse_res=(self.settings.coarse_res[0], int(v))))
    upsample_res = property(lambda self: self.settings.upsample_res, lambda self, v: self._set(upsample_res=v))
    upsample_preds = property(lambda self: self.settings.upsample_preds,
                              lambda self, v: self._set(upsample_preds=bool(v)))
    symmetric = property(lambda self: self.settings.symmetric, lambda self, v: self._set(symmetric=bool(v)))
    attenuate_cert = property(lambda self: self.settings.attenuate_cert,
                              lambda self, v: self._set(attenuate_cert=bool(v)))
    sample_thresh = property(lambda self: self.settings.sample_thresh, lambda self, v: self._set(sample_thresh=v))
    sample_mode = property(lambda self: self.settings.sample_mode, lambda self, v: self._set(sample_mode=v))

    def _set(self, **changes) -> None:
        self.apply_settings(replace(self.settings, **changes))

    def get_output_resolution(self) -> tuple[int, int]:
        return self.settings.upsample_res if self.settings.upsample_preds else self.settings.coarse_res

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- network ------------------------------------------------------------------------------------
    def forward(self, batch: dict, upsample: bool = False, scale_factor: float = 1.0,
                flow: torch.Tensor | None = None, certainty: torch.Tensor | None = None,
                symmetric: bool = False, coarse: torch.Tensor | None = None) -> dict:
        """Match ``batch["im_A"]`` to ``batch["im_B"]``, both ``(B, 3, H, W)`` ImageNet-normalised.

        Returns the per-scale ``corresps`` of :class:`Decoder`: A->B only (what training uses, as romatch's
        ``forward``), or with ``symmetric=True`` batch ``2B`` with the first B rows A->B and the last B rows
        B->A (romatch's ``forward_symmetric``, used by :meth:`match` when ``settings.symmetric``).
        ``upsample``: refinement-only pass (strides 8..1) starting from ``flow``/``certainty`` of a previous pass.
        ``coarse``: the DINOv2 maps of ``cat(im_A, im_B)`` when already computed (:meth:`extract`).
        """
        images = torch.cat((batch["im_A"], batch["im_B"]), dim=0)
        pyramid = self.encoder(images, upsample=upsample, coarse=coarse)
        if symmetric:
            query = pyramid
            support = {s: torch.cat(f.chunk(2)[::-1], dim=0) for s, f in pyramid.items()}
        else:
            query = {s: f.chunk(2)[0] for s, f in pyramid.items()}
            support = {s: f.chunk(2)[1] for s, f in pyramid.items()}
        return self.decoder(query, support, upsample=upsample, flow=flow, certainty=certainty,
                            scale_factor=scale_factor)

    # --- inference ----------------------------------------------------------------------------------
    def _prepare(self, image, size: tuple[int, int], device) -> torch.Tensor:
        tensor = to_tensor(image, size)
        return imagenet_normalize(tensor)[None].to(device)

    @torch.inference_mode()
    def match(self, im_A_input, im_B_input, *args, im_A_high_res=None, im_B_high_res=None, batched=True,
              device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense matching of image A to image B (and B to A when symmetric).

        Args:
            im_A_input, im_B_input: file paths, PIL images, or ImageNet-normalised tensors ``(B, 3, H, W)``
                with H, W multiples of 14 (both the same size). Images are resized to ``coarse_res``
                (PIL bicubic, aspect ratio not kept).
            im_A_high_res, im_B_high_res: tensors ``(B, 3, *upsample_res)`` for the upsampling pass with
                tensor inputs; when omitted they are resized from the inputs (bicubic, antialiased).
            device: where to run (default: the model's device).

        Returns:
            ``warp`` ``(B, H, 2W, 4)`` when symmetric, else ``(B, H, W, 4)``: every entry is
            ``(x_A, y_A, x_B, y_B)`` in normalised coordinates; the left half is A's grid with its match
            in B, the right half B's grid with its match in A. ``certainty`` ``(B, H, 2W)`` / ``(B, H, W)``
            in [0, 1]. (H, W) is ``upsample_res`` when ``upsample_preds`` else the coarse size.
        """
        if not batched:
            raise ValueError("batched must be True, non-batched inference is no longer supported.")
        s = self.settings
        device = torch.device(device) if device is not None else self.device
        if isinstance(im_A_input, torch.Tensor) or isinstance(im_B_input, torch.Tensor):
            im_a, im_b = self._check_tensors(im_A_input, im_B_input)
            im_a, im_b = im_a.to(device), im_b.to(device)
            if s.upsample_preds:
                im_A_high_res = self._high_res(im_A_high_res, im_a, s.upsample_res, device)
                im_B_high_res = self._high_res(im_B_high_res, im_b, s.upsample_res, device)
            return self._match_prepared(im_a, im_b, im_A_high_res, im_B_high_res)
        pil_a, pil_b = load_image(im_A_input), load_image(im_B_input)
        high = (None, None)
        if s.upsample_preds:
            high = (self._prepare(pil_a, s.upsample_res, device), self._prepare(pil_b, s.upsample_res, device))
        return self._match_prepared(self._prepare(pil_a, s.coarse_res, device),
                                    self._prepare(pil_b, s.coarse_res, device), *high)

    @torch.inference_mode()
    def extract(self, image, device=None) -> RomaImageFeatures:
        """The per-image part of :meth:`match` for one image (path or PIL image): its network inputs at the
        coarse and upsampling resolutions and its DINOv2 map (the encoder's costly half). Many-pair matching
        keeps these per image; :meth:`match_features` does the rest."""
        s = self.settings
        device = torch.device(device) if device is not None else self.device
        pil = load_image(image)
        coarse = self._prepare(pil, s.coarse_res, device)
        high = self._prepare(pil, s.upsample_res, device) if s.upsample_preds else None
        return RomaImageFeatures(coarse, high, self.encoder.coarse_features(coarse))

    stack_features = staticmethod(RomaImageFeatures.stack)  # many pairs in one match_features call

    @torch.inference_mode()
    def match_features(self, features_A: RomaImageFeatures, features_B: RomaImageFeatures):
        """:meth:`match` of the images behind two :meth:`extract` outputs (or two
        :meth:`RomaImageFeatures.stack` batches of equal length): the same ``(warp, certainty)``."""
        s = self.settings
        for name, f in (("A", features_A), ("B", features_B)):
            if tuple(f.coarse.shape[-2:]) != s.coarse_res or (s.upsample_preds and f.high is None):
                raise InputShapeError(f"features of image {name} were extracted at {tuple(f.coarse.shape[-2:])}"
                                      f" for other settings than this model's (coarse {s.coarse_res})")
        if features_A.coarse.shape[0] != features_B.coarse.shape[0]:
            raise InputShapeError(f"feature batches of different lengths: {features_A.coarse.shape[0]} and "
                                  f"{features_B.coarse.shape[0]}")
        coarse = torch.cat((features_A.dinov2, features_B.dinov2))
        return self._match_prepared(features_A.coarse, features_B.coarse, features_A.high, features_B.high,
                                    coarse=coarse)

    def _match_prepared(self, im_a, im_b, high_a, high_b, coarse: torch.Tensor | None = None):
        """``match`` from network inputs: ``(B, 3, ...)`` images at the coarse size (and, when upsampling,
        at ``upsample_res``), ImageNet-normalised, on the device; ``coarse``: DINOv2 maps of ``cat(im_a, im_b)``."""
        self.train(False)
        s = self.settings
        hs, ws = im_a.shape[-2:]
        scale_factor = self._scale_factor(upsample=False)  # from the settings even for tensors (upstream)
        corresps = self.forward({"im_A": im_a, "im_B": im_b}, scale_factor=scale_factor, symmetric=s.symmetric,
                                coarse=coarse)
        if s.upsample_preds:
            hs, ws = s.upsample_res
        if s.attenuate_cert:
            low = F.interpolate(corresps[16]["certainty"], size=(hs, ws), align_corners=False, mode="bilinear")
            low = 0.5 * low * (low < 0)
        if s.upsample_preds:
            finest = corresps[1]
            corresps = self.forward({"im_A": high_a, "im_B": high_b}, upsample=True,
                                    scale_factor=self._scale_factor(upsample=True), flow=finest["flow"],
                                    certainty=finest["certainty"], symmetric=s.symmetric)
        flow = corresps[1]["flow"]
        certainty = corresps[1]["certainty"] - (low if s.attenuate_cert else 0)
        return self._assemble(flow, certainty, s.symmetric)

    @torch.inference_mode()
    def match_batch(self, images_A: list, images_B: list, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Match lists of images (paths or PIL images) in one batched pass.

        Each pair is preprocessed exactly as :meth:`match` does (PIL bicubic resize to the coarse and
        upsampling resolutions), so the result equals ``match`` run pair by pair, stacked along the batch:
        ``warp`` ``(N, H, 2W, 4)``, ``certainty`` ``(N, H, 2W)`` (symmetric).
        """
        if len(images_A) != len(images_B) or not images_A:
            raise InputShapeError(f"match_batch needs two equally long, non-empty lists, got {len(images_A)} "
                                  f"and {len(images_B)} images")
        device = torch.device(device) if device is not None else self.device
        s = self.settings
        pil_a, pil_b = [load_image(x) for x in images_A], [load_image(x) for x in images_B]

        def stack(images, size):
            return torch.cat([self._prepare(image, size, device) for image in images])

        high = (stack(pil_a, s.upsample_res), stack(pil_b, s.upsample_res)) if s.upsample_preds else (None, None)
        return self.match(stack(pil_a, s.coarse_res), stack(pil_b, s.coarse_res), im_A_high_res=high[0],
                          im_B_high_res=high[1], device=device)

    def _scale_factor(self, upsample: bool) -> float:
        """Scale of the refiners' displacement embedding (see ``RomaSettings.scale_factor_mode``)."""
        s = self.settings
        (ch, cw), (uh, uw) = s.coarse_res, s.upsample_res
        if s.scale_factor_mode == "coarse_relative":
            return math.sqrt(uh * uw / (ch * cw)) if upsample else 1.0
        h, w = (uh, uw) if upsample else (ch, cw)
        return math.sqrt(h * w / s.train_resolution**2)

    @staticmethod
    def _assemble(flow: torch.Tensor, certainty: torch.Tensor, symmetric: bool):
        b2, _, hs, ws = flow.shape
        a_to_b = flow.permute(0, 2, 3, 1)
        grid = normalized_grid(hs, ws, device=flow.device)[None].expand(b2, hs, ws, 2)
        certainty = certainty.sigmoid()
        wrong = (a_to_b.abs() > 1).any(dim=-1)
        certainty = certainty.masked_fill(wrong[:, None], 0)
        a_to_b = a_to_b.clamp(-1, 1)
        if symmetric:
            forward, backward = a_to_b.chunk(2)
            grid = grid[: b2 // 2]
            warp = torch.cat((torch.cat((grid, forward), -1), torch.cat((backward, grid), -1)), dim=2)
            certainty = torch.cat(certainty.chunk(2), dim=3)
        else:
            warp = torch.cat((grid, a_to_b), dim=-1)
        return warp, certainty[:, 0]

    def _check_tensors(self, im_a, im_b) -> tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(im_a, torch.Tensor) and isinstance(im_b, torch.Tensor)):
            raise InputShapeError("pass both images as tensors, or both as paths / PIL images")
        patch = self.encoder.dinov2.config.patch_size
        for name, t in (("im_A", im_a), ("im_B", im_b)):
            if t.dim() != 4 or t.shape[1] != 3:
                raise InputShapeError(f"{name} must be a (B, 3, H, W) tensor, got shape {tuple(t.shape)}")
            if t.shape[-2] % patch or t.shape[-1] % patch:
                raise InputShapeError(f"{name} size {tuple(t.shape[-2:])} is not a multiple of {patch}")
        if im_a.shape != im_b.shape:
            raise InputShapeError(f"im_A and im_B must have the same shape, got {tuple(im_a.shape)} and "
                                  f"{tuple(im_b.shape)}")
        return im_a, im_b

    @staticmethod
    def _high_res(given, low: torch.Tensor, size: tuple[int, int], device) -> torch.Tensor:
        if given is not None:
            if given.dim() != 4 or tuple(given.shape[-2:]) != tuple(size) or given.shape[0] != low.shape[0]:
                raise InputShapeError(f"high-res input must be ({low.shape[0]}, 3, {size[0]}, {size[1]}), "
                                      f"got {tuple(given.shape)}")
            return given.to(device)
        return F.interpolate(low, size=size, mode="bicubic", align_corners=False, antialias=True)


def build_roma(device="cpu", matcher_weights=None, dinov2_weights=None, matcher_spec: WeightFile | None = None,
               dinov2_spec: WeightFile | None = None, coarse_res=ROMA_COARSE_RES,
               upsample_res=ROMA_UPSAMPLE_RES, amp_dtype=torch.float16,
               symmetric=True, name: str | None = None, arch: RomaArchitecture | None = None,
               upsample_preds: bool = True, attenuate_cert: bool = True, gp_solver: str = "cholesky",
               scale_factor_mode: str = "train_resolution",
               sample_thresh: float = 0.05, sample_mode: str = "threshold_balanced", download: bool = True,
               **unknown) -> RoMa:
    """Build RoMa and load its weights strictly (see :mod:`densematch.weights` for what ``*_weights`` accept).

    ``amp_dtype`` applies on CUDA only (fp32 on CPU, as upstream). ``weights=False`` /
    ``dinov2_weights=False`` skip loading (random initialisation, e.g. before training).
    """
    if unknown:
        raise TypeError(f"unknown argument(s) for {name or 'RoMa'}: {', '.join(sorted(unknown))}")
    device = torch.device(device)
    settings = RomaSettings(
        coarse_res=_pair(coarse_res), upsample_res=_pair(upsample_res), upsample_preds=upsample_preds,
        symmetric=symmetric, attenuate_cert=attenuate_cert, sample_thresh=sample_thresh, sample_mode=sample_mode,
        amp_dtype=amp_dtype if device.type == "cuda" else None, gp_solver=gp_solver,
        scale_factor_mode=scale_factor_mode,
    )
    what = name or "RoMa"
    # read (and if needed download) both files before building: a missing file fails fast
    dinov2_state = None if dinov2_weights is False else read_state_dict(
        dinov2_weights, what=f"{what} DINOv2", spec=dinov2_spec, download=download, argument="dinov2_weights")
    matcher_state = None if matcher_weights is False else read_state_dict(
        matcher_weights, what=what, spec=matcher_spec, download=download)
    with torch.device("meta") if device.type == "meta" else contextlib.nullcontext():
        model = RoMa(arch or RomaArchitecture(), settings)
    model.name = name
    if dinov2_state is not None:
        load_strict(model.encoder.dinov2, dinov2_state, what=f"{what} DINOv2")
    if matcher_state is not None:
        load_strict(model, matcher_state, what=what)
    del dinov2_state, matcher_state
    model = model.to(device).eval()
    if device.type == "cuda" and settings.amp_dtype is not None:
        model.encoder.dinov2.to(settings.amp_dtype)  # published: DINOv2 weights stored in the AMP dtype on CUDA
    return model


__all__ = ["RoMa", "RomaImageFeatures", "build_roma"]
