"""Line plots as RGB arrays, drawn with OpenCV (matplotlib is not needed): benchmark error curves,
loss curves. Each curve is ``(label, xs, ys)``; colours follow a fixed, colour-blind-safe cycle."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue (RGB)
CYCLE = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (213, 94, 0), (204, 121, 167), (86, 180, 233))


def _text(image, text, origin, scale=0.45, colour=(40, 40, 40), thickness=1):
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _ticks(low: float, high: float, count: int = 6) -> np.ndarray:
    step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** np.floor(np.log10(step)) if step > 0 else 1.0
    step = min((s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= step), default=step)
    return np.arange(np.ceil(low / step) * step, high + 1e-9 * step, step)


def line_plot(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
              ylabel: str, xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              vlines: Sequence[float] = (), size: tuple[int, int] = (720, 480)) -> np.ndarray:
    """An RGB uint8 picture ``(height, width, 3)`` of the curves with axes, ticks, a title and a legend.

    ``vlines``: x positions marked with dashed grey lines (e.g. the AUC thresholds).
    """
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 84, 24, 40, 50
    xs_all = np.concatenate([np.asarray(c[1], float) for c in curves]) if curves else np.zeros(1)
    ys_all = np.concatenate([np.asarray(c[2], float) for c in curves]) if curves else np.zeros(1)
    finite_x, finite_y = xs_all[np.isfinite(xs_all)], ys_all[np.isfinite(ys_all)]
    x0, x1 = xlim or (float(finite_x.min(initial=0)), float(finite_x.max(initial=1)))
    y0, y1 = ylim or (float(finite_y.min(initial=0)), float(finite_y.max(initial=1)))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def to_px(x, y):
        u = left + (np.asarray(x, float) - x0) / (x1 - x0) * (width - left - right)
        v = height - bottom - (np.asarray(y, float) - y0) / (y1 - y0) * (height - top - bottom)
        return u, v

    for tick in _ticks(x0, x1):
        u, _ = to_px(tick, y0)
        cv2.line(image, (int(u), top), (int(u), height - bottom), (235, 235, 235), 1)
        _text(image, f"{tick:g}", (u - 8, height - bottom + 18), 0.4)
    for tick in _ticks(y0, y1):
        _, v = to_px(x0, tick)
        cv2.line(image, (left, int(v)), (width - right, int(v)), (235, 235, 235), 1)
        label = f"{tick:g}"
        _text(image, label, (left - 8 - cv2.getTextSize(label, _FONT, 0.4, 1)[0][0], v + 4), 0.4)
    for x in vlines:
        u, _ = to_px(x, y0)
        for v in range(top, height - bottom, 8):
            cv2.line(image, (int(u), v), (int(u), min(v + 4, height - bottom)), (150, 150, 150), 1)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (90, 90, 90), 1)
    for i, (_, xs, ys) in enumerate(curves):
        u, v = to_px(np.clip(np.asarray(xs, float), x0, x1), np.clip(np.asarray(ys, float), y0, y1))
        points = np.stack([u, v], axis=1)[np.isfinite(u) & np.isfinite(v)].round().astype(np.int32)
        if len(points) > 1:
            cv2.polylines(image, [points], False, CYCLE[i % len(CYCLE)], 2, cv2.LINE_AA)
    if curves:  # legend in a framed box, bottom right (where recall curves leave room)
        widths = [cv2.getTextSize(label, _FONT, 0.45, 1)[0][0] for label, _, _ in curves]
        box_w, box_h = max(widths) + 56, 20 * len(curves) + 10
        bx, by = width - right - box_w - 10, height - bottom - box_h - 10
        cv2.rectangle(image, (bx, by), (bx + box_w, by + box_h), (255, 255, 255), -1)
        cv2.rectangle(image, (bx, by), (bx + box_w, by + box_h), (180, 180, 180), 1)
        for i, (label, _, _) in enumerate(curves):
            ly = by + 20 + 20 * i
            cv2.line(image, (bx + 10, ly - 4), (bx + 38, ly - 4), CYCLE[i % len(CYCLE)], 2, cv2.LINE_AA)
            _text(image, label, (bx + 46, ly))
    _text(image, title, (left, 26), 0.55, thickness=1)
    label_width = cv2.getTextSize(xlabel, _FONT, 0.45, 1)[0][0]
    _text(image, xlabel, ((left + width - right - label_width) / 2, height - 12))
    rotated = np.full((24, height, 3), 255, np.uint8)
    _text(rotated, ylabel, ((height - cv2.getTextSize(ylabel, _FONT, 0.45, 1)[0][0]) / 2, 17))
    image[:, 4:28] = np.minimum(image[:, 4:28], np.rot90(rotated))
    return image


def recall_curve(errors: Sequence[float | None], max_error: float, points: int = 200):
    """``(thresholds, fraction of pairs with error <= threshold)``; failures (None, NaN, inf) never count."""
    values = np.array([np.inf if e is None else float(e) for e in errors], float)
    values[np.isnan(values)] = np.inf
    thresholds = np.linspace(0, max_error, points)
    recall = [(values <= t).mean() if len(values) else 0.0 for t in thresholds]
    return thresholds, np.asarray(recall)
