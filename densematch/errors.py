"""Exceptions raised for bad input. Every message names the offending thing (file, key, shape, name)."""

from __future__ import annotations


class DensematchError(Exception):
    """Base class of all densematch errors that describe a problem with the user's input."""


class ImageReadError(DensematchError, OSError):
    """An image file is missing, unreadable or corrupt."""


class InputShapeError(DensematchError, ValueError):
    """A tensor or array has the wrong shape, dtype or size."""


class UnknownModelError(DensematchError, KeyError):
    """A model or matcher name is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(DensematchError, ValueError):
    """An option has a value the model or command cannot use."""


class WeightsError(DensematchError, RuntimeError):
    """A checkpoint cannot be found, downloaded or does not fit the model."""


class MissingDependencyError(DensematchError, ImportError):
    """An optional dependency is needed for this feature but not installed."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency, or raise a :class:`MissingDependencyError` saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module}', which is not installed. "
            f"Install it with: pip install 'densematch[{extra}]'"
        ) from exc
