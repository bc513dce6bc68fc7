"""Sky masking with an ONNX sky-segmentation model (``skyseg.onnx``), only when a model file is given.

Preprocessing follows the published L2M ``sky_seg.py`` (and the widely used ``skyseg.onnx`` demos): halve
the image with ``cv2.pyrDown`` while both sides are at least 640, resize to 320x320, RGB, ImageNet mean/std,
NCHW float32. The output is min-max normalised to [0, 255], resized back, and pixels above 127.5 are sky.
Sky pixels get unknown depth (they are rendered far away but carry no ground truth).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InputShapeError, WeightsError, require

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_SIZE = 320


def skyseg_input(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> the model input ``(1, 3, 320, 320)`` float32."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputShapeError(f"sky segmentation needs an (H, W, 3) RGB image, got {image.shape}")
    while min(image.shape[:2]) >= 640:
        image = cv2.pyrDown(image)
    resized = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32) / 255.0
    return ((resized - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)


def skyseg_mask(output: np.ndarray, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
    """Raw model output -> ``(height, width)`` bool sky mask (min-max normalised, resized, thresholded)."""
    scores = np.asarray(output, dtype=np.float32).squeeze()
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        return np.zeros((height, width), dtype=bool)
    scaled = ((scores - low) / (high - low) * 255).astype(np.uint8)
    return cv2.resize(scaled, (width, height)) > threshold * 255


class SkySegmenter:
    """Runs ``skyseg.onnx`` with onnxruntime: ``segmenter(image) -> (H, W) bool`` (True = sky)."""

    def __init__(self, model_path, threshold: float = 0.5, providers: list[str] | None = None):
        onnxruntime = require("onnxruntime", "sky", "--sky-model (sky segmentation)")
        path = Path(model_path)
        if not path.is_file():
            raise WeightsError(f"sky segmentation model not found: {path} (e.g. skyseg.onnx)")
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise WeightsError(f"cannot load the sky segmentation model {path}: {exc}") from exc
        self.threshold = threshold

    def __call__(self, image: np.ndarray) -> np.ndarray:
        inputs = {self._session.get_inputs()[0].name: skyseg_input(image)}
        output = self._session.run([self._session.get_outputs()[0].name], inputs)[0]
        return skyseg_mask(output, image.shape[0], image.shape[1], self.threshold)
