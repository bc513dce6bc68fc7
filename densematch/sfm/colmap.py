"""COLMAP reconstruction from hloc-format ``features.h5`` / ``matches.h5`` with pycolmap.

Steps (as hloc's ``reconstruction.py``): a fresh COLMAP database; images imported with cameras from
their EXIF data (or COLMAP's default focal length); keypoints imported **with 0.5 added** (our and
hloc's keypoints put the centre of the top-left pixel at (0, 0), COLMAP puts the pixel *corner* there,
exactly as hloc's ``import_features`` does); matches imported; geometric verification (RANSAC of
E / F / H per pair); incremental mapping. The largest model is written into the output folder as
COLMAP binary files, as text files in ``text/`` and as a coloured point cloud ``points3D.ply``, together
with ``summary.json``.

Needs pycolmap >= 4.2 (checked by :func:`require_pycolmap`; tested with 4.2.1): older releases
name the database and verification calls differently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DensematchError, ImageReadError, MissingDependencyError
from ..io import atomic_path, atomic_write, make_temp_folder
from . import h5io
from .pairs import Pair, read_pairs, unique_pairs

CAMERA_MODES = ("auto", "single", "per_folder", "per_image")
DATABASE_FILE = "database.db"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ReconstructionConfig:
    camera_mode: str = "auto"  # auto (one camera per image size + EXIF), single, per_folder, per_image
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model of the imported images
    camera_params: str | None = None  # known intrinsics "p1,p2,..." in COLMAP's order and pixel convention
    refine_intrinsics: bool = True  # False keeps the cameras fixed (with known camera_params)
    min_match_score: float | None = None  # matches with a lower matching_scores0 are not imported
    ransac_max_error: float = 4.0  # pixels, geometric verification
    ransac_max_trials: int = 20_000  # as hloc
    min_inlier_ratio: float = 0.1  # as hloc
    min_num_inliers: int = 15  # a pair with fewer verified matches is not used
    seed: int = 0  # RANSAC and mapper seed (-1: COLMAP's default); reproducible only with num_threads=1
    num_threads: int = -1  # -1: all cores (COLMAP's multi-threaded steps are not bit-reproducible)
    verbose: bool = False  # show COLMAP's log
    progress: bool = False  # a progress bar over the steps (import, verification, mapping, writing)

    def __post_init__(self):
        if self.camera_mode not in CAMERA_MODES:
            raise DensematchError(
                f"unknown camera mode '{self.camera_mode}'; known: {', '.join(CAMERA_MODES)}"
            )
        if self.num_threads == 0 or self.num_threads < -1:
            raise DensematchError(f"threads must be -1 (all cores) or positive, got {self.num_threads}")


def check_camera(model: str, params: str | None) -> None:
    """Raise :class:`DensematchError` for an unknown COLMAP camera model or a wrong parameter list."""
    pycolmap = require_pycolmap()
    known = [name for name in pycolmap.CameraModelId.__members__ if name != "INVALID"]
    if model not in known:
        raise DensematchError(f"unknown COLMAP camera model '{model}'; known: {', '.join(known)}")
    if params is None:
        return
    expected = pycolmap.Camera.create_from_model_id(1, getattr(pycolmap.CameraModelId, model), 1.0, 2, 2)
    names = expected.params_info
    try:
        values = [float(v) for v in params.split(",")]
    except ValueError:
        raise DensematchError(f"camera parameters must be comma-separated numbers ({names}), got '{params}'") \
            from None
    if len(values) != len(expected.params):
        raise DensematchError(f"camera model {model} takes {len(expected.params)} parameters ({names}), "
                              f"got {len(values)}: '{params}'")
    if not all(np.isfinite(values)) or values[0] <= 0:
        raise DensematchError(f"camera parameters must be finite with a positive focal length, got '{params}'")


@dataclass
class ReconstructionSummary:
    num_input_images: int
    num_registered_images: int
    num_points3D: int
    mean_reprojection_error: float | None  # pixels; None when nothing was reconstructed
    mean_track_length: float | None
    num_models: int
    num_matched_pairs: int  # pairs imported into the database
    num_verified_pairs: int  # pairs with at least min_num_inliers geometrically verified matches
    registered_images: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pycolmap_version: str = ""


def reconstruct(
    match_dir,
    images_dir,
    sfm_dir,
    config: ReconstructionConfig = ReconstructionConfig(),
    pairs: Sequence[Pair] | str | os.PathLike | None = None,
) -> ReconstructionSummary:
    """Build a COLMAP model from ``match_dir/{features,matches}.h5`` into ``sfm_dir``.

    Args:
        pairs: the pairs to import (a list or a pair-list file); None imports every pair in ``matches.h5``.
    Returns the summary that is also written to ``sfm_dir/summary.json``.
    """
    pycolmap = require_pycolmap()
    check_camera(config.camera_model, config.camera_params)
    start = time.perf_counter()
    match_dir, images_dir, sfm_dir = Path(match_dir), Path(images_dir), Path(sfm_dir)
    features, matches = match_dir / h5io.FEATURES_FILE, match_dir / h5io.MATCHES_FILE
    for path in (features, matches):
        if not path.is_file():
            raise DensematchError(f"{path} not found; run densematch match-pairs first")
    if not images_dir.is_dir():
        raise ImageReadError(f"image folder not found: {images_dir}")
    names = h5io.list_feature_names(features)
    if not names:
        raise DensematchError(f"{features} holds no keypoints")
    if pairs is None:
        pairs = pairs_in_matches(matches, names)
    elif isinstance(pairs, (str, os.PathLike)):
        pairs = read_pairs(pairs)
    pairs = unique_pairs(pairs)
    sfm_dir.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    steps = tqdm(total=4, unit="step", desc="import", disable=not config.progress, leave=False)
    with _colmap_log(config.verbose):
        database = sfm_dir / DATABASE_FILE
        with atomic_path(database) as tmp:
            os.unlink(tmp)
            pycolmap.Database.open(tmp).close()  # a new database with COLMAP's tables
            image_ids = _import_images(tmp, images_dir, names, config)
            num_matched = _import_features_and_matches(tmp, image_ids, features, matches, pairs, config)
            steps.update()
            steps.set_description("verify")
            _verify(tmp, config)
        with pycolmap.Database.open(database) as db:
            _, inliers = db.read_two_view_geometry_num_inliers()
            num_verified = sum(count >= config.min_num_inliers for count in inliers)
        steps.update()
        steps.set_description("map")
        models = _map(database, images_dir, sfm_dir, config)
        steps.update()
        steps.set_description("write")

    best = max(models, key=lambda r: (r.num_reg_images(), r.num_points3D()), default=None)
    summary = ReconstructionSummary(
        num_input_images=len(names),
        num_registered_images=best.num_reg_images() if best else 0,
        num_points3D=best.num_points3D() if best else 0,
        mean_reprojection_error=float(best.compute_mean_reprojection_error()) if best else None,
        mean_track_length=float(best.compute_mean_track_length()) if best else None,
        num_models=len(models),
        num_matched_pairs=num_matched,
        num_verified_pairs=num_verified,
        registered_images=sorted(best.images[i].name for i in best.reg_image_ids()) if best else [],
        seconds=time.perf_counter() - start,
        pycolmap_version=pycolmap.__version__,
    )
    _write_model(best, sfm_dir)
    with atomic_write(sfm_dir / SUMMARY_FILE, "w") as handle:
        json.dump(asdict(summary), handle, indent=1)
    steps.update()
    steps.close()
    return summary


MIN_PYCOLMAP = (4, 2)


def require_pycolmap():
    """Import pycolmap, or raise :class:`MissingDependencyError` when it is absent or older than 4.2.

    The database and verification calls used here (``Database.open``, ``import_images(image_names=)``,
    ``geometric_verification(verifier_options=)``) have these names only in recent pycolmap releases.
    """
    try:
        import pycolmap
    except ImportError as exc:
        raise MissingDependencyError("densematch reconstruct needs pycolmap: pip install pycolmap") from exc
    version = tuple(int(part) for part in pycolmap.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_PYCOLMAP or not hasattr(pycolmap, "geometric_verification"):
        raise MissingDependencyError(
            f"densematch reconstruct needs pycolmap >= {'.'.join(map(str, MIN_PYCOLMAP))}, found "
            f"{pycolmap.__version__}; upgrade with: pip install -U pycolmap"
        )
    return pycolmap


def pairs_in_matches(matches, names: Sequence[str]) -> list[Pair]:
    """The image-name pairs of a ``matches.h5``, mapping its ``-`` keys back to names with ``/``."""
    by_key: dict[str, str] = {}
    for name in names:
        key = name.replace("/", "-")
        if by_key.setdefault(key, name) != name:
            raise DensematchError(
                f"images '{by_key[key]}' and '{name}' have the same key '{key}' in "
                f"{matches}; pass the pair list explicitly"
            )
    pairs = []
    for key0, key1 in h5io.list_pairs(matches):
        if key0 not in by_key or key1 not in by_key:
            raise DensematchError(f"the pair '{key0}/{key1}' of {matches} names an image without keypoints")
        pairs.append((by_key[key0], by_key[key1]))
    return pairs


def _import_images(database: Path, images_dir: Path, names: Sequence[str], config) -> dict[str, int]:
    import pycolmap

    options = pycolmap.ImageReaderOptions()
    options.camera_model = config.camera_model
    if config.camera_params:
        options.camera_params = config.camera_params
    mode = getattr(pycolmap.CameraMode, config.camera_mode.upper())
    pycolmap.import_images(database, images_dir, mode, image_names=list(names), options=options)
    with pycolmap.Database.open(database) as db:
        image_ids = {image.name: image.image_id for image in db.read_all_images()}
    missing = [name for name in names if name not in image_ids]
    if missing:
        raise ImageReadError(
            f"COLMAP could not read {len(missing)} image(s) of features.h5 from {images_dir}, "
            f"e.g. {missing[0]}"
        )
    return image_ids


def _import_features_and_matches(
    database: Path, image_ids: dict[str, int], features: Path, matches: Path, pairs: Sequence[Pair], config
) -> int:
    import pycolmap

    num_matched = 0
    with pycolmap.Database.open(database) as db:
        for name, image_id in image_ids.items():
            feats = h5io.read_features(features, name)
            camera = db.read_camera(db.read_image(image_id).camera_id)
            if (camera.width, camera.height) != feats.image_size:
                raise DensematchError(
                    f"image '{name}' is {camera.width}x{camera.height} in the image folder but "
                    f"{feats.image_size[0]}x{feats.image_size[1]} in {features}; wrong --images folder?"
                )
            db.write_keypoints(image_id, feats.keypoints.astype(np.float64) + 0.5)  # COLMAP: corner origin
        for name0, name1 in pairs:
            if name0 not in image_ids or name1 not in image_ids:
                raise DensematchError(f"the pair ({name0}, {name1}) names an image without keypoints")
            indices, scores = h5io.read_matches(matches, name0, name1)
            if config.min_match_score is not None:
                indices = indices[scores > config.min_match_score]
            db.write_matches(image_ids[name0], image_ids[name1], indices.astype(np.uint32))
            num_matched += 1
    return num_matched


def _verify(database: Path, config: ReconstructionConfig) -> None:
    import pycolmap

    options = pycolmap.TwoViewGeometryOptions()
    options.min_num_inliers = config.min_num_inliers
    options.ransac.max_error = config.ransac_max_error
    options.ransac.max_num_trials = config.ransac_max_trials
    options.ransac.min_inlier_ratio = config.min_inlier_ratio
    options.ransac.random_seed = config.seed
    verifier = pycolmap.GeometricVerifierOptions()
    verifier.num_threads = config.num_threads
    pycolmap.geometric_verification(database, verifier_options=verifier, two_view_geometry_options=options)


def _map(database: Path, images_dir: Path, sfm_dir: Path, config: ReconstructionConfig) -> list:
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.seed
    options.mapper.random_seed = config.seed
    options.triangulation.random_seed = config.seed
    options.min_num_matches = config.min_num_inliers
    if not config.refine_intrinsics:
        options.ba_refine_focal_length = False
        options.ba_refine_extra_params = False
        options.mapper.abs_pose_refine_focal_length = False
        options.mapper.abs_pose_refine_extra_params = False
    scratch = Path(tempfile.mkdtemp(prefix=".models.", dir=sfm_dir))
    try:
        models = pycolmap.incremental_mapping(database, images_dir, scratch, options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return list(models.values())


MODEL_FILES = ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin")
TEXT_DIR = "text"  # the same model as COLMAP text files (cameras.txt, images.txt, points3D.txt, ...)
PLY_FILE = "points3D.ply"  # the 3D points with colours, for any point-cloud viewer


def _write_model(reconstruction, sfm_dir: Path) -> None:
    """Write the model into ``sfm_dir``: binary files, ``text/`` and ``points3D.ply``, each replaced atomically.

    With no reconstruction, model files of an earlier run are removed (they would contradict the summary).
    """
    if reconstruction is None:
        for name in (*MODEL_FILES, PLY_FILE):
            (sfm_dir / name).unlink(missing_ok=True)
        shutil.rmtree(sfm_dir / TEXT_DIR, ignore_errors=True)
        return
    scratch = Path(tempfile.mkdtemp(prefix=".model.", dir=sfm_dir))
    try:
        reconstruction.write_binary(scratch)
        reconstruction.export_PLY(scratch / PLY_FILE)
        for file in sorted(scratch.iterdir()):
            os.replace(file, sfm_dir / file.name)
        text = make_temp_folder(scratch, prefix=".text.")
        reconstruction.write_text(text)
        shutil.rmtree(sfm_dir / TEXT_DIR, ignore_errors=True)
        os.replace(text, sfm_dir / TEXT_DIR)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _colmap_log(verbose: bool):
    """Silence COLMAP's INFO/WARNING log lines unless ``verbose`` (restores the previous level)."""
    import pycolmap

    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = previous if verbose else max(previous, 2)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous
