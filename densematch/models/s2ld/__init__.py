"""S2LD: sparse-to-local-dense matching (IEEE TIP 2023). See :mod:`.network` for the model and its quirks."""

from .network import S2LD
from .zoo import s2ld

__all__ = ["S2LD", "s2ld"]
