"""Matching image collections for structure from motion: pair lists, hloc-format HDF5, COLMAP.

>>> from densematch.sfm import list_images, pairs_exhaustive, match_collection, MatcherSpec, reconstruct
>>> names = list_images("images/")
>>> match_collection("images/", pairs_exhaustive(names), "out/", MatcherSpec("sift"))
>>> summary = reconstruct("out/", "images/", "sfm/")

The same steps on the command line: ``densematch pairs``, ``densematch match-pairs``,
``densematch reconstruct``. Nothing here imports Ray or pycolmap until it is used.
"""

from .colmap import ReconstructionConfig, ReconstructionSummary, reconstruct
from .keypoints import DenseKeypointAggregator, GridConfig
from .matching import MatchConfig, MatchOutputs, match_collection
from .pairs import (
    list_images,
    pairs_exhaustive,
    pairs_from_descriptors,
    pairs_sequential,
    read_pairs,
    write_pairs,
)
from .retrieval import global_descriptors
from .workers import MatcherSpec

__all__ = [
    "DenseKeypointAggregator",
    "GridConfig",
    "MatchConfig",
    "MatchOutputs",
    "MatcherSpec",
    "ReconstructionConfig",
    "ReconstructionSummary",
    "global_descriptors",
    "list_images",
    "match_collection",
    "pairs_exhaustive",
    "pairs_from_descriptors",
    "pairs_sequential",
    "read_pairs",
    "reconstruct",
    "write_pairs",
]
