"""What the page offers: the models (with their weights status) and the example image pairs.

Nothing here imports Gradio, so it is usable and testable without the ``ui`` extra.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
READY_STATES = ("none needed", "installed", "cached")


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model menu.

    Attributes:
        name: the name :func:`densematch.matchers.get_matcher` accepts.
        kind: "dense", "matches" or "classical" (the registry's ``ModelEntry.kind``).
        description: one line from the registry (or the matcher's docstring).
        status: weights status, one of :data:`densematch.weights.WEIGHT_STATES`.
        where: the local file or URL the status refers to ("" when there is none).
        note: the registry's ``weights_note`` (where the authors keep files code cannot fetch).
    """

    name: str
    kind: str
    description: str
    status: str
    where: str
    note: str = ""

    @property
    def ready(self) -> bool:
        """True when the model can run offline now."""
        return self.status in READY_STATES

    @property
    def label(self) -> str:
        """The menu text: name, kind and weights status."""
        return f"{self.name} ({self.kind}, weights: {self.status})"

    def reason(self) -> str:
        """Why the model cannot run offline ("" when it can)."""
        if self.ready:
            return ""
        text = self.status
        if self.where:
            text += (" from " if self.status == "needs download" else ": ") + self.where
        return text + (f" ({self.note})" if self.note else "")


def model_choices() -> list[ModelChoice]:
    """Every name the matchers accept, with kind and weights status, in menu order (ready ones first)."""
    from ..matchers import list_matchers
    from ..registry import MODELS
    from ..weights import weights_status

    choices = []
    for name in list_matchers():
        entry = MODELS[name]
        status, where = weights_status(entry)
        choices.append(ModelChoice(name, entry.kind, entry.description, status, where, entry.weights_note))
    return sorted(choices, key=lambda c: (not c.ready, c.name))


def default_model(choices: list[ModelChoice]) -> str:
    """The registry's default model when it is ready offline, else the first ready one."""
    from .. import registry

    preferred = getattr(registry, "DEFAULT_MODEL", None)
    ready = [c.name for c in choices if c.ready]
    if preferred in ready:
        return preferred
    return ready[0] if ready else choices[0].name


def default_image_dirs() -> list[Path]:
    """The demo pairs of the shared data folder (``$DENSEMATCH_SHARED/data/demo_pairs``, else
    ``../shared/data/demo_pairs`` beside the source tree), when present."""
    root = Path(os.environ.get("DENSEMATCH_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    demo = root / "data" / "demo_pairs"
    return [demo] if demo.is_dir() else []


def example_pairs(dirs: list[Path]) -> list[tuple[Path, Path]]:
    """Image pairs to offer as examples: those listed in each folder's ``pairs.json`` (``image0`` /
    ``image1`` relative to the folder), else consecutive images of the folder in name order."""
    pairs: list[tuple[Path, Path]] = []
    for folder in dirs:
        folder, before = Path(folder), len(pairs)
        if not folder.is_dir():
            continue
        listed = folder / "pairs.json"
        if listed.is_file():
            try:
                items = json.loads(listed.read_text()).get("pairs", [])
            except (OSError, ValueError, AttributeError):
                items = []
            for item in items:
                if not isinstance(item, dict):
                    continue
                a, b = folder / str(item.get("image0", "")), folder / str(item.get("image1", ""))
                if a.is_file() and b.is_file():
                    pairs.append((a, b))
            if len(pairs) > before:
                continue
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        pairs.extend(zip(images[:-1:2], images[1::2], strict=True))
    return pairs
