"""The flags every command shares, spelled and checked once.

Import-light on purpose (no torch, numpy or cv2 at import time) so that ``densematch --help`` is fast;
the checks that need torch import it when they run. Every check raises :class:`ConfigError` with a
one-line message before any slow work starts.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from pathlib import Path

from ..defaults import DENSE_NUM_MATCHES, SIFT_NUM_KEYPOINTS
from ..errors import ConfigError


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts that must be at least 1 (``--num``, ``--workers``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model(parser: argparse.ArgumentParser, *, default: str | None = None, weights: bool = True) -> None:
    """``--model NAME`` (hidden alias ``--matcher``), ``--option KEY=VALUE`` (hidden ``--matcher-option``)
    and, with ``weights``, ``--weights FILE``."""
    default_text = f" (default: {default})" if default else " (required)"
    parser.add_argument(
        "--model", dest="model", default=default, metavar="NAME",
        help=f"registered model or 'sift'; see `densematch models`{default_text}",
    )
    parser.add_argument("--matcher", dest="model", help=argparse.SUPPRESS)
    parser.add_argument(
        "--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
        help="model option, repeatable; VALUE is read as JSON (e.g. coarse_res=280, ratio=0.9, mutual=true)",
    )
    parser.add_argument("--matcher-option", dest="options", action="append", help=argparse.SUPPRESS)
    if weights:
        parser.add_argument("--weights", metavar="FILE", help="local checkpoint instead of the published one")
        parser.add_argument("--dinov2-weights", metavar="FILE", help="local DINOv2 checkpoint (RoMa models)")


def add_num(parser: argparse.ArgumentParser) -> None:
    """``--num N``: matches sampled per pair (dense models) or keypoints per image (SIFT)."""
    parser.add_argument(
        "--num", type=positive_int, default=None, metavar="N",
        help=f"matches sampled per pair for dense models (default {DENSE_NUM_MATCHES}); "
        f"keypoints per image for sift (default {SIFT_NUM_KEYPOINTS})",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", metavar="DEVICE",
        help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, mps (default: auto)",
    )


def add_quiet(parser: argparse.ArgumentParser, what: str = "progress bars") -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help=f"no {what}")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def add_output(parser: argparse.ArgumentParser, help: str = "output folder") -> None:
    parser.add_argument("--output", "-o", required=True, type=Path, metavar="DIR", help=help)


def require_model(args: argparse.Namespace) -> str:
    if not args.model:
        raise ConfigError("--model NAME is required (see `densematch models`)")
    return args.model


def parse_options(items: list[str] | None) -> dict:
    """``["ratio=0.9", "mutual=true", "name=x"]`` -> ``{"ratio": 0.9, "mutual": True, "name": "x"}``."""
    options = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--option expects KEY=VALUE with a name as KEY, got '{item}'")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def resolve_device(text: str | None) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else is checked to exist on this machine."""
    import torch

    text = (text or "auto").strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"invalid --device '{text}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text}: no CUDA device is available on this machine (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {text}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {text}: unsupported device type '{device.type}'; use cpu, cuda or mps")
    return str(device)


def check_output_folder(path: Path, flag: str = "--output") -> Path:
    """An output folder may exist (runs resume) but must not be a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} must be a folder, but {path} is an existing file")
    return path


def check_input_file(path, flag: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag}: file not found: {path}")
    return path


def check_input_folder(path, flag: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{flag}: folder not found: {path}")
    return path


def model_entry(name: str):
    """The registry entry of ``name``, or a one-line :class:`ConfigError` listing the registered names."""
    from ..registry import MODELS, list_models

    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; available: {', '.join(list_models())}")
    return MODELS[name]


def default_num(model: str, num: int | None) -> int | None:
    """``--num`` or the default of the model's kind, one constant per kind for every command: matches
    sampled per pair (dense), keypoints per image (classical), every match (None) for matches models."""
    if num is not None:
        return num
    return {"dense": DENSE_NUM_MATCHES, "classical": SIFT_NUM_KEYPOINTS}.get(model_entry(model).kind)


def check_model_options(name: str, options: dict, *, flags: dict[str, str] | None = None) -> None:
    """Refuse options the model does not take before any download or slow work, naming what the user typed.

    A factory with a closed signature is checked against it; one that forwards ``**options`` is built once
    on the ``meta`` device without weights (no download, no memory), which runs all its own checks.
    ``flags`` maps option names to the command-line flag that set them (``coarse_res`` -> ``--coarse-res``).
    """
    entry = model_entry(name)
    flags = flags or {}
    named = {key: flags.get(key, f"--option {key}") for key in options}
    roles = set()
    if entry.weights:  # (densematch.weights imports torch: not for weight-free models)
        from ..weights import argument_name

        roles = {argument_name(role) for role in entry.weights}
    for key in options:
        if key.endswith("_weights") and key not in roles:
            raise ConfigError(f"model '{name}' has no {key.removesuffix('_weights')} weights; drop {named[key]}")
    if not options:
        return
    module_name, func_name = entry.factory.split(":")
    factory = getattr(importlib.import_module(module_name), func_name)
    parameters = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        accepted = [k for k in parameters if k not in ("device", "weights")]
        bad = [named[key] for key in options if key not in accepted]
        if bad:
            raise ConfigError(f"model '{name}' does not take {', '.join(bad)} (its options: "
                              f"{', '.join(accepted) or 'none'})")
        return
    # no weights at all (weights=False, <role>_weights=False): nothing is read or downloaded
    trial = {**options, **{role: False for role in roles if role != "weights"}}
    try:
        entry.build("meta", weights=False, **trial)
    except (TypeError, ValueError) as exc:  # ConfigError and InputShapeError are ValueErrors
        given = ", ".join(f"{flag} (= {key})" if not flag.startswith("--option") else flag
                          for key, flag in named.items())
        raise ConfigError(f"model '{name}' rejects {given}: {' '.join(str(exc).split())}") from None
    except Exception:  # noqa: BLE001 - a model that cannot be built on 'meta' is checked when it is built
        return


def check_weights_arg(name: str, weights) -> None:
    """Only what needs no file access; the files themselves are checked together by fetch_weights."""
    entry = model_entry(name)
    if weights is not None and not entry.weights and entry.kind == "classical":
        raise ConfigError(f"--weights: the '{name}' matcher has no weights")


def fetch_weights(name: str, weights, options: dict) -> None:
    """Make sure every weight file of a registered model is here (downloading what is missing), so that
    all missing files are reported in one message before the model is built."""
    entry = model_entry(name)
    if not entry.weights:
        if weights is not None:
            check_input_file(weights, "--weights")
        return
    from ..weights import argument_name, fetch_all  # (imports torch: not for weight-free models)

    given = {role: (weights if role == "matcher" else options.get(argument_name(role))) for role in entry.weights}
    fetch_all(entry.weights, given, what=name, note=entry.weights_note)


def checked_options(args: argparse.Namespace, model: str, flagged: tuple[str, ...] = ("dinov2_weights",)) -> dict:
    """The model's keyword arguments from ``--option`` and the dedicated flags named by ``flagged``
    (``dinov2_weights`` <- ``--dinov2-weights``), checked against the model before any work."""
    options, flags = parse_options(args.options), {}
    for key in flagged:
        value = getattr(args, key, None)
        if value is not None:
            options[key], flags[key] = value, "--" + key.replace("_", "-")
    check_model_options(model, options, flags=flags)
    check_weights_arg(model, getattr(args, "weights", None))
    return options


def build_matcher(args: argparse.Namespace, *, num: int, options: dict, device: str):
    """``get_matcher`` with the command's arguments; errors become one-line :class:`ConfigError`."""
    from ..errors import DensematchError
    from ..matchers import get_matcher

    try:
        return get_matcher(args.model, device=device, weights=getattr(args, "weights", None), num=num,
                           seed=getattr(args, "seed", 0), **options)
    except DensematchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for model '{args.model}': {exc}") from None

