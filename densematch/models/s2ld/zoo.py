"""``s2ld(...)``: build S2LD with published or local weights.

Upstream publishes its weights only in a Google Drive folder (see the registry's ``weights_note``), which
code cannot download: ``weights=None`` uses ``s2ld-e2e-inference.pt`` from the torch hub cache or raises a
:class:`~densematch.errors.WeightsError` naming the file, the folder and ``weights=PATH`` / ``--weights PATH``.
Accepted files: the ``.pt`` inference state dict, a Lightning ``.ckpt`` (``{"state_dict": ...}``, keys
optionally prefixed ``matcher.`` as in a ``PL_S2LD`` training checkpoint; other keys are then ignored, as
upstream) or an already loaded state dict. Loading is strict otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from ...errors import ConfigError, WeightsError
from ...registry import get_entry
from ...weights import cache_dir, load_strict, read_state_dict
from .config import InferenceConfig, S2LDConfig, ScoreFilter
from .network import S2LD

_PREFIX = "matcher."


def s2ld_state_dict(source) -> dict:
    """A ``weights`` argument (path or dict) -> the flat S2LD state dict (Lightning wrappers removed)."""
    state = read_state_dict(source, what="S2LD")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if any(key.startswith(_PREFIX) for key in state):
        state = {key[len(_PREFIX):]: value for key, value in state.items() if key.startswith(_PREFIX)}
    return dict(state)


def _published_file():
    entry = get_entry("s2ld")
    spec = entry.weights["matcher"]
    path = cache_dir() / spec.file_name
    if not path.is_file():
        raise WeightsError(
            f"the S2LD weights '{spec.file_name}' are not in the cache ({path}). {entry.weights_note} "
            f"Or copy the file to {path}."
        )
    return path


def s2ld(device="cpu", weights=None, resize: int | None = 640, coarse_threshold: float = 0.2,
         score_filter: bool = False, score_filter_threshold: float = 0.2, score_filter_min_matches: int = 100,
         min_keypoint_score: float | None = None, min_confidence: float | None = None,
         border_margin: float | None = None, max_matches: int | None = None, pad_to_square: bool = False,
         dtype: torch.dtype = torch.float32) -> S2LD:
    """S2LD in eval mode on ``device``.

    Args:
        weights: None (published ``s2ld-e2e-inference.pt`` from the cache), a path, a state dict, or False
            (random initialisation, as upstream's; for training from scratch).
        resize: longer side the network sees (published 640; None = as given, floored to multiples of 8).
        coarse_threshold: dual-softmax confidence threshold (upstream ``THR``, published 0.2).
        score_filter, score_filter_threshold, score_filter_min_matches: upstream's optional keypoint-score
            filter (``with_filter``; off in the published evaluation).
        min_keypoint_score, min_confidence, border_margin, max_matches: further filters, all off by default;
            upstream's demo uses 0.5, 0.8, 5 and 1024.
        pad_to_square: zero-pad to ``resize x resize`` with padding masks (upstream's MegaDepth-1500 test).
    """
    if resize is not None and resize < 8:
        raise ConfigError(f"resize must be >= 8 px (or None), got {resize}")
    if not 0.0 <= coarse_threshold < 1.0:
        raise ConfigError(f"coarse_threshold must be in [0, 1), got {coarse_threshold}")
    config = S2LDConfig()
    config = replace(config, coarse_matching=replace(config.coarse_matching, threshold=coarse_threshold))
    inference = InferenceConfig(
        resize=resize, pad_to_square=pad_to_square,
        score_filter=ScoreFilter(score_filter_threshold, 0.1, score_filter_min_matches) if score_filter else None,
        min_keypoint_score=min_keypoint_score, min_confidence=min_confidence, border_margin=border_margin,
        max_matches=max_matches,
    )
    model = S2LD(config, inference)
    if weights is not False:
        source = _published_file() if weights is None else weights
        load_strict(model, s2ld_state_dict(source), what="S2LD")
    return model.to(device=device, dtype=dtype).eval()
