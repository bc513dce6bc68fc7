"""The loss curve of a run (``OUTPUT/loss_curve.png``), drawn with OpenCV from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

SIZE = (720, 360)  # width, height in pixels
MARGIN = (70, 30, 20, 40)  # left, top, right, bottom


def read_losses(metrics_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and losses of the lines of ``metrics.jsonl`` (finite losses only)."""
    steps, losses = [], []
    for line in Path(metrics_path).read_text().splitlines():
        record = json.loads(line)
        if np.isfinite(record.get("loss", np.nan)):
            steps.append(record["step"])
            losses.append(record["loss"])
    return np.asarray(steps, np.float64), np.asarray(losses, np.float64)


def draw_loss_curve(steps: np.ndarray, losses: np.ndarray, title: str = "training loss") -> np.ndarray:
    """An RGB picture ``(H, W, 3)`` of ``losses`` against ``steps`` (log scale when they span > 10x)."""
    width, height = SIZE
    left, top, right, bottom = MARGIN
    image = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(image, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    if len(steps) == 0:
        return image
    log = losses.min() > 0 and losses.max() / losses.min() > 10
    values = np.log10(losses) if log else losses
    low, high = values.min(), values.max()
    high = high if high > low else low + 1
    first, last = steps.min(), max(steps.max(), steps.min() + 1)
    x = left + (steps - first) / (last - first) * (width - left - right)
    y = top + (high - values) / (high - low) * (height - top - bottom)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (160, 160, 160), 1)
    for fraction in (0.0, 0.5, 1.0):
        value = high - fraction * (high - low)
        label = f"{10 ** value:.3g}" if log else f"{value:.3g}"
        row = int(top + fraction * (height - top - bottom))
        cv2.putText(image, label, (4, row + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for step, column in ((first, left), (last, width - right - 40)):
        cv2.putText(image, f"step {int(step)}", (column, height - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (60, 60, 60), 1, cv2.LINE_AA)
    points = np.stack([x, y], axis=1).round().astype(np.int32)
    cv2.polylines(image, [points], False, (31, 119, 180), 2, cv2.LINE_AA)
    return image


def write_loss_curve(metrics_path: Path, output: Path) -> Path:
    """Draw the curve of ``metrics_path`` into ``output`` (PNG) and return its path."""
    steps, losses = read_losses(metrics_path)
    image = draw_loss_curve(steps, losses)
    cv2.imwrite(str(output), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return Path(output)
