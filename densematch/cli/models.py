"""List every model the commands accept: kind, input size, weights status and where the files are.

Weights status per file: "cached" (in the torch hub cache, ready offline), "needs download" (fetched
on first use from the URL shown), "manual download" (the authors' files cannot be fetched by code; see
the note), "train it here" (no published weights: `densematch train NAME`), "none needed" (classical).
"""

from __future__ import annotations

import argparse

HELP = "list the registered models with their kind, input size and weights status"

_SIZE_WORDS = ("res", "resolution", "size", "max_keypoints")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (one object per model) instead of a table")


def describe_input(factory) -> str:
    """The image-size defaults of a factory's signature, e.g. ``coarse_res=560 upsample_res=864``."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return "?"
    sizes = [f"{p.name}={p.default}" for p in parameters
             if p.default is not inspect.Parameter.empty and any(p.name.endswith(w) for w in _SIZE_WORDS)]
    return " ".join(sizes) or "original size"


def weight_rows(entry, cache) -> list[dict]:
    """One dict per weight file of a registry entry: role, status, path (or URL)."""
    rows = []
    for role, spec in entry.weights.items():
        path = cache / spec.file_name
        if path.is_file():
            rows.append({"role": role, "status": "cached", "where": str(path)})
        elif spec.url:
            rows.append({"role": role, "status": "needs download", "where": spec.url})
        else:
            rows.append({"role": role, "status": "manual download", "where": entry.weights_note or str(path)})
    if not rows:
        trainable = entry.recipe is not None
        status = "none needed" if entry.kind == "classical" else ("train it here" if trainable else "pass --weights")
        rows.append({"role": "-", "status": status, "where": entry.weights_note or "-"})
    return rows


def collect() -> list[dict]:
    """Every registered model (what :func:`densematch.get_matcher` accepts), with what the table shows."""
    import importlib

    from ..registry import MODELS
    from ..weights import cache_dir

    cache = cache_dir()
    models = []
    for name in sorted(MODELS):
        entry = MODELS[name]
        module_name, func_name = entry.factory.split(":")
        factory = getattr(importlib.import_module(module_name), func_name)
        models.append({"name": name, "kind": entry.kind, "input": describe_input(factory),
                       "description": entry.description, "trainable": entry.recipe is not None,
                       "weights": weight_rows(entry, cache)})
    return models


def format_table(models: list[dict]) -> str:
    header = ("model", "kind", "input", "weights", "file")
    rows = []
    for model in models:
        for i, weight in enumerate(model["weights"]):
            role = "" if weight["role"] == "-" else f"{weight['role']}: "
            first = (model["name"], model["kind"], model["input"]) if i == 0 else ("", "", "")
            rows.append((*first, role + weight["status"], weight["where"]))
    widths = [max(len(str(r[c])) for r in (header, *rows)) for c in range(len(header) - 1)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in (header, *rows)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from ..weights import cache_dir

    models = collect()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    print(format_table(models))
    print(f"\ncache: {cache_dir()} ($TORCH_HOME/hub/checkpoints); offline: copy the files there or pass --weights")
    return 0
