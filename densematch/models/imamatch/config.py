"""Typed, frozen settings of IMAMatch: what the weights depend on, and how inference runs.

The defaults of :class:`IMAMatchArchitecture` are upstream's ``megadepth_model_config``
(``test_megadepth.py`` / ``train_megadepth.py``); the ScanNet model differs only in
``fix_bug_for_scannet``. :data:`MEGADEPTH_TEST` and :data:`SCANNET_TEST` are the published test settings
(``model.forward_test`` arguments of ``test_megadepth.py`` / ``test_scannet.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ...errors import ConfigError

ADD_MATCHES = (0, 4, 9, 16)


@dataclass(frozen=True)
class IMAMatchArchitecture:
    """What the checkpoint depends on (upstream ``Matcher(config)``)."""

    dim_conv_stem: int = 64  # channels of the two stride-2 stem convs (1/2)
    dims: tuple[int, int, int] = (128, 192, 256)  # channels at 1/2, 1/4, 1/8 (the fine, middle, coarse maps)
    depths: tuple[int, int, int] = (0, 1, 2)  # ConvBlocks per stage (0 at 1/2: two plain 3x3 convs instead)
    head_dim: int = 32  # d_spatial: channels per attention head (coarse and fine attention)
    expansion: tuple[int, int, int, int] = (1, 1, 1, 2)  # MB expansion at 1/2, 1/4, 1/8, attention FFN / fine MLP
    attn_depth: int = 9  # MultiScaleAttentionBlocks on the 1/8 map (self then simultaneous cross)
    dropout: float = 0.1  # DropPath in the backbone and attention, Dropout in the fine MLPs (training only)
    focusing_factor: int = 3  # p of focused linear attention
    # Upstream's global FIX_BUG_FOR_SCANNET: every focused-attention depthwise conv reshapes its values with
    # height 60 (right only at 1/8 of a 480-pixel-high input, wrong at 1/16 and 1/32). The ScanNet model was
    # trained with it on. Needs (W/32)*(H/32) to be a multiple of 60.
    fix_bug_for_scannet: bool = False
    window1: int = 7  # fine step 1 window side (radius 3.5 at 1/2)
    window2: int = 3  # fine step 2 window side (radius 1.5 at 1/2)
    coarse_temperature: float = 0.1  # dual-softmax temperature of the coarse similarity


@dataclass(frozen=True)
class IMAMatchSettings:
    """Inference settings; the names are the ``get_matcher(..., name=value)`` / ``--option`` names."""

    resize: int = 1216  # longer side the network sees (a multiple of 32)
    pad_to_square: bool = True  # zero-pad bottom-right to resize x resize (MegaDepth loader); else resize the
    #                             short side to the nearest multiple of 32 (ScanNet's 640x480 for 4:3 images)
    coarse_threshold: float = 0.2  # keep coarse matches with dual-softmax confidence above this
    high_threshold: float = 0.6  # matches below this are densified when add_matches > 0
    add_matches: int = 4  # sub-queries per low-confidence match: 0 (off), 4, 9 or 16
    allow_reverse: bool = True  # key-area direction decision (F-RANSAC) and one-to-many matches
    iter_optimize: bool = True  # 5 more step-2 passes, averaged with the first
    rplus: float = 1.0  # offset added to 4 x coarse cell of the reference at 1/2 resolution
    use_ba: bool = False  # two-view bundle adjustment after pose estimation (pose tools only)
    fine_chunk: int = 8192  # fine matches per chunk of step 1 (upstream: 50000, attention only); bounds memory

    def __post_init__(self):
        if not isinstance(self.resize, int) or self.resize < 32 or self.resize % 32:
            raise ConfigError(f"resize must be a positive multiple of 32, got {self.resize!r}")
        if self.add_matches not in ADD_MATCHES:
            raise ConfigError(f"add_matches must be one of {ADD_MATCHES}, got {self.add_matches!r}")
        for name in ("coarse_threshold", "high_threshold", "rplus"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        if not 0 <= self.coarse_threshold < 1:
            raise ConfigError(f"coarse_threshold must be in [0, 1), got {self.coarse_threshold}")
        for name in ("pad_to_square", "allow_reverse", "iter_optimize", "use_ba"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.fine_chunk < 1:
            raise ConfigError(f"fine_chunk must be >= 1, got {self.fine_chunk}")

    def updated(self, **options) -> IMAMatchSettings:
        """A copy with ``options`` changed; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown IMAMatch option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **options)


MEGADEPTH_ARCH = IMAMatchArchitecture()
SCANNET_ARCH = IMAMatchArchitecture(fix_bug_for_scannet=True)

MEGADEPTH_TEST = IMAMatchSettings()  # 1216 px padded, thresh 0.2, high 0.6, add 4, iter, reverse, rplus 1
SCANNET_TEST = IMAMatchSettings(  # 640x480, thresh 0.01, high 2, add 0, iter, reverse, rplus 1.5, BA
    resize=640, pad_to_square=False, coarse_threshold=0.01, high_threshold=2.0, add_matches=0, rplus=1.5,
    use_ba=True,
)
