"""IMAMatch: semi-dense matching with increased matching amount (MBFormer + key-area direction +
densification + two-stage fine matching). Build it with :func:`densematch.load` ("imamatch_megadepth",
"imamatch_scannet") or :mod:`.zoo`."""

from .config import IMAMatchArchitecture, IMAMatchSettings
from .network import IMAMatch

__all__ = ["IMAMatch", "IMAMatchArchitecture", "IMAMatchSettings"]
