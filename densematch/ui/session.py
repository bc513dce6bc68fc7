"""One match run of the page, without Gradio: check the images, build (or reuse) the matcher, match,
fit the chosen geometry, draw the pictures and write the downloads.

Downloads follow the library's conventions: ``matches.npz`` as written by ``densematch match``
(``kpts0``, ``kpts1`` in OpenCV pixels of the images as given, ``certainty``, ``size0``/``size1`` as
``(width, height)``, plus ``inliers`` of the robust fit), and ``geometry.json`` with the estimated model.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, ImageReadError, InputShapeError
from ..geometry import ESTIMATORS, RansacConfig, estimate_fundamental, estimate_homography, estimate_relative_pose
from ..geometry.epipolar import essential_from_pose
from ..io import atomic_path, image_size, load_image
from .pictures import draw_dense, draw_inliers

GEOMETRIES = ("fundamental", "essential", "homography", "none")
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class MatchSettings:
    """What the user chose for one run.

    Attributes:
        model: a name accepted by :func:`densematch.matchers.get_matcher`.
        num: matches to sample (dense models) or the keypoint cap (sparse ones).
        geometry: one of :data:`GEOMETRIES`; "essential" uses ``intrinsics0/1``.
        threshold_px: inlier threshold of the robust fit in pixels.
        method: robust estimator back end, one of :data:`densematch.geometry.ESTIMATORS`.
        intrinsics0, intrinsics1: "fx fy cx cy" in OpenCV pixels of the image as given; blank = a guess
            (focal 1.2 max(W, H), principal point at the centre), recorded as such in the JSON.
        options: model factory options "key=value, key=value" (e.g. "coarse_res=280").
    """

    model: str
    num: int = 2000
    geometry: str = "fundamental"
    threshold_px: float = 1.0
    method: str = "opencv-magsac"
    intrinsics0: str = ""
    intrinsics1: str = ""
    options: str = ""

    def __post_init__(self):
        if not 1 <= int(self.num) <= 100_000:
            raise ConfigError(f"number of matches must be between 1 and 100000, got {self.num}")
        if self.geometry not in GEOMETRIES:
            raise ConfigError(f"unknown geometry '{self.geometry}'; choose one of {', '.join(GEOMETRIES)}")
        if self.method not in ESTIMATORS:
            raise ConfigError(f"unknown estimator '{self.method}'; choose one of {', '.join(ESTIMATORS)}")
        if not self.threshold_px > 0:
            raise ConfigError(f"the inlier threshold must be positive, got {self.threshold_px}")


@dataclass
class RunResult:
    """Everything the page shows for one model: pictures (RGB uint8), summary numbers, files."""

    matches_picture: np.ndarray
    dense_picture: np.ndarray | None
    summary: dict
    files: list[Path] = field(default_factory=list)


def parse_options(text: str) -> dict:
    """``"coarse_res=280, amp=false"`` -> ``{"coarse_res": 280, "amp": False}`` (ints, floats, booleans, text)."""
    options = {}
    for item in filter(None, (part.strip() for part in (text or "").replace("\n", ",").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"model option '{item}' is not of the form key=value")
        options[key.strip()] = _parse_value(value.strip())
    return options


def _parse_value(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def intrinsics(text: str, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """``K`` (3, 3) from "fx fy cx cy" (or "f cx cy", or "f"), else a guess for an image of ``size``
    ``(width, height)``; the bool says whether it was given."""
    width, height = size
    try:
        values = [float(v) for v in (text or "").replace(",", " ").split()]
    except ValueError:
        raise ConfigError(f"intrinsics '{text}' are not numbers; write 'fx fy cx cy'") from None
    guess = [1.2 * max(width, height), 1.2 * max(width, height), (width - 1) / 2, (height - 1) / 2]
    if len(values) == 0:
        fx, fy, cx, cy = guess
    elif len(values) == 1:  # f
        fx, fy, cx, cy = values[0], values[0], guess[2], guess[3]
    elif len(values) == 3:  # f cx cy
        fx, fy, cx, cy = values[0], *values
    elif len(values) == 4:  # fx fy cx cy
        fx, fy, cx, cy = values
    else:
        raise ConfigError(f"intrinsics '{text}' must be 'fx fy cx cy', 'f cx cy' or 'f'")
    if not (fx > 0 and fy > 0):
        raise ConfigError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), bool(values)


def check_image(path, which: str, max_pixels: int):
    """Read an uploaded image, or raise a one-line error naming ``which`` image and the problem."""
    if path is None or str(path) == "":
        raise InputShapeError(f"{which}: no image given; upload one or pick an example pair")
    try:
        width, height = image_size(path)  # reads the header only: huge files are refused before decoding
    except Image.DecompressionBombError:
        raise InputShapeError(f"{which} is too large to decode safely; please downscale it") from None
    except ImageReadError as exc:
        name = Path(str(path)).name
        raise ImageReadError(f"{which} ('{name}') is not an image file that can be read") from exc
    if width * height > max_pixels:
        raise InputShapeError(f"{which} is {width}x{height} ({width * height / 1e6:.0f} MP); the limit is "
                              f"{max_pixels / 1e6:.0f} MP, please downscale it")
    return load_image(path)


class MatcherCache:
    """The last few built matchers, keyed by (name, num, options), so repeated runs skip model loading."""

    def __init__(self, device: str, capacity: int = 2):
        self.device = device
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()  # one run at a time: the models share the machine's cores

    def get(self, name: str, num: int, options: dict):
        """``(matcher, seconds spent building it)``; 0 s when reused."""
        from ..matchers import get_matcher

        options_key = tuple(sorted(options.items()))
        key = (name, num, options_key)
        if key not in self._items:
            # adapters whose ``num`` only post-processes (sampling, top-k) share the built model
            same = [m for (n, _, o), m in self._items.items() if (n, o) == (name, options_key) and hasattr(m, "num")]
            if same:
                self._items[key] = copy.copy(same[-1])
                self._items[key].num = num
        seconds = 0.0
        if key in self._items:
            self._items.move_to_end(key)
        else:
            start = time.perf_counter()
            self._items[key] = get_matcher(name, device=self.device, num=num, **options)
            seconds = time.perf_counter() - start
        matcher = self._items[key]
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return matcher, seconds


def run_match(image0, image1, settings: MatchSettings, cache: MatcherCache, out_dir: Path,
              progress: Progress | None = None, title: str = "") -> RunResult:
    """Match two PIL images with ``settings.model`` and write ``matches.npz`` and ``geometry.json`` in
    ``out_dir``. ``progress(fraction, text)`` is called before each step."""
    progress = progress or (lambda fraction, text: None)
    with cache.lock:
        progress(0.05, f"{settings.model}: loading")
        matcher, seconds_load = cache.get(settings.model, int(settings.num), parse_options(settings.options))
        progress(0.3, f"{settings.model}: matching")
        start = time.perf_counter()
        matches, dense = matcher.match_pair_and_dense(image0, image1)
        seconds_match = time.perf_counter() - start
    progress(0.8, f"{settings.model}: fitting {settings.geometry}")
    start = time.perf_counter()
    geometry = fit_geometry(matches.kpts0, matches.kpts1, image0.size, image1.size, settings)
    seconds_geometry = time.perf_counter() - start
    inliers = np.asarray(geometry.pop("inlier_mask"), bool)
    summary = {
        "model": settings.model, "num_matches": len(matches), "num_inliers": geometry["num_inliers"],
        "geometry": settings.geometry, "seconds_load": round(seconds_load, 3),
        "seconds_match": round(seconds_match, 3), "seconds_geometry": round(seconds_geometry, 3),
        "size0": "{}x{}".format(*image0.size), "size1": "{}x{}".format(*image1.size),
    }
    progress(0.9, f"{settings.model}: drawing")
    caption = title or settings.model
    picture = draw_inliers(image0, image1, matches.kpts0, matches.kpts1,
                           inliers if settings.geometry != "none" else None, caption)
    dense_picture = None if dense is None else draw_dense(image0, image1, dense.warp, dense.certainty, caption)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz, js = out_dir / f"{settings.model}_matches.npz", out_dir / f"{settings.model}_geometry.json"
    with atomic_path(npz) as tmp:
        np.savez(tmp, kpts0=matches.kpts0.astype(np.float32), kpts1=matches.kpts1.astype(np.float32),
                 certainty=matches.scores.astype(np.float32), size0=np.array(matches.size0),
                 size1=np.array(matches.size1), inliers=inliers)
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps({**summary, **geometry}, indent=2) + "\n")
    return RunResult(picture, dense_picture, summary, [npz, js])


def fit_geometry(kpts0, kpts1, size0, size1, settings: MatchSettings) -> dict:
    """Fit the chosen model; a JSON-ready dict with the matrices, counts, settings and ``inlier_mask``."""
    n = len(kpts0)
    out = {"threshold_px": settings.threshold_px, "estimator": settings.method,
           "pixel_convention": "OpenCV: centre of the top-left pixel is (0, 0)"}
    if settings.geometry == "none":
        return {**out, "num_inliers": None, "inlier_mask": np.zeros(n, bool)}
    config = RansacConfig(method=settings.method, threshold_px=float(settings.threshold_px),
                          confidence=0.9999, max_iters=10000)
    if settings.geometry == "fundamental":
        fit = estimate_fundamental(kpts0, kpts1, config)
        matrices = {} if fit is None else {"F": fit.F.tolist()}
    elif settings.geometry == "homography":
        fit = estimate_homography(kpts0, kpts1, config)
        matrices = {} if fit is None else {"H_0to1": fit.H.tolist()}
    else:
        K0, given0 = intrinsics(settings.intrinsics0, size0)
        K1, given1 = intrinsics(settings.intrinsics1, size1)
        out |= {"K0": K0.tolist(), "K1": K1.tolist(),
                "intrinsics": "given" if given0 and given1 else "guessed (focal 1.2 max(W, H)) where not given"}
        fit = estimate_relative_pose(kpts0, kpts1, K0, K1, config)
        matrices = {} if fit is None else {"E": essential_from_pose(fit.T_0to1).tolist(), "R": fit.R.tolist(),
                                           "t": fit.t.tolist()}
    if fit is None:
        return {**out, "num_inliers": 0, "failed": "no model found (too few or inconsistent matches)",
                "inlier_mask": np.zeros(n, bool)}
    return {**out, **matrices, "num_inliers": fit.num_inliers, "inlier_mask": fit.inliers}
