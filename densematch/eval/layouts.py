"""Readers for the standard benchmark layouts a user downloads.

Each reader takes a folder and returns a :class:`~densematch.eval.datasets.Benchmark`, or ``None``
when the folder is not of its layout (so :func:`load_benchmark`, at the end of this module, can try
the next one). The formats are those read by the public LoFTR and RoMa evaluation code:

MegaDepth-1500
    LoFTR's ``megadepth_test_1500_scene_info/*.npz`` (keys ``pair_infos``, ``intrinsics``, ``poses``,
    ``image_paths``), directly in the folder or in that sub-folder, with the images at the paths
    ``image_paths`` gives relative to the folder (or to ``folder/test``), e.g.
    ``Undistorted_SfM/0015/images/*.jpg``. ``poses`` are world-to-camera, so
    ``T_0to1 = poses[j] @ inv(poses[i])``. Evaluation resolution: longer side 1200 px (RoMa).
ScanNet-1500
    LoFTR's ``test.npz`` (``name`` rows ``[scene, sub_scene, frame0, frame1]`` and ``rel_pose``,
    the 3x4 ``T_0to1``), in the folder or in ``scannet_test_1500/``, images at
    ``scans_test/scene{scene:04d}_{sub:02d}/color/{frame}.jpg`` and intrinsics at
    ``scans_test/<scene>/intrinsic/intrinsic_color.txt``. Evaluation resolution: shorter side 480 px.
HPatches sequences
    ``hpatches-sequences-release/<seq>/{1..6}.ppm`` with ``H_1_<k>`` (image 1 -> image k, OpenCV
    pixels); pairs ``(1, k)`` for k = 2..6. The 8 sequences LoFTR / RoMa leave out (images too large)
    are skipped. Evaluation resolution of image k: shorter side 480 px (DKM / RoMa).
WxBS
    ``<category>/<scene>/01.*``, ``02.*`` and ``corrs.txt`` (rows ``x0 y0 x1 y1``), as in the
    WxBS v1.1 archive (optionally under ``v1.1/``).

``.npz`` files of MegaDepth-1500 hold Python objects and are read with ``allow_pickle=True``: only
read files from a source you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import image_size
from .datasets import (
    Benchmark,
    BenchmarkPair,
    DatasetFormatError,
    check_images_exist,
    gt_array,
    read_pairs_json,
)

MEGADEPTH_LONG_SIDE = 1200
SCANNET_SHORT_SIDE = 480
HPATCHES_SHORT_SIDE = 480
HPATCHES_SKIPPED = frozenset(
    {
        "i_contruction",
        "i_crownnight",
        "i_dc",
        "i_pencils",
        "i_whitebuilding",
        "v_artisans",
        "v_astronautis",
        "v_talent",
    }
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")

LAYOUT_HELP = (
    "MegaDepth-1500 (LoFTR scene-info *.npz + Undistorted_SfM images), "
    "ScanNet-1500 (test.npz + scans_test/), "
    "HPatches (hpatches-sequences-release/<seq>/1.ppm, H_1_2, ...) or WxBS (<category>/<scene>/01.*, 02.*, "
    "corrs.txt)"
)


def _load_npz(path: Path, allow_pickle: bool) -> dict | None:
    try:
        with np.load(path, allow_pickle=allow_pickle) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetFormatError(f"cannot read {path}: {exc}") from None


def _read_matrix(path: Path) -> np.ndarray:
    """A whitespace-separated text matrix (2-D even with one row)."""
    try:
        return np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise DatasetFormatError(f"cannot read {path}: {exc}") from None


def set_eval_scales(pairs: list[BenchmarkPair], root: Path, length: int, side: str) -> None:
    """Check the images exist, then set the evaluation scales that resize the ``side`` ("longer" or
    "shorter") of every image to ``length`` pixels."""
    check_images_exist(pairs, root)
    pick = max if side == "longer" else min
    for pair in pairs:
        pair.eval_scale0 = length / pick(image_size(pair.image0))
        pair.eval_scale1 = length / pick(image_size(pair.image1))


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


# --- MegaDepth-1500 ---------------------------------------------------------------------------


def _megadepth_scene_files(root: Path) -> list[Path]:
    for folder in (root, root / "megadepth_test_1500_scene_info", root / "scene_info"):
        if not folder.is_dir():
            continue
        listing = folder / "megadepth_test_1500.txt"
        if listing.is_file():
            names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            return [folder / (n if n.endswith(".npz") else f"{n}.npz") for n in names]
        files = sorted(folder.glob("*.npz"))
        scene_files = [f for f in files if "pair_infos" in _npz_keys(f)]
        if scene_files:
            return scene_files
    return []


def _npz_keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return list(data.files)
    except (OSError, ValueError, EOFError):
        return []


def read_megadepth_1500(root: Path) -> Benchmark | None:
    """MegaDepth-1500 in LoFTR's scene-info format (see the module docstring)."""
    scene_files = _megadepth_scene_files(root)
    if not scene_files:
        return None
    missing = [f for f in scene_files if not f.is_file()]
    if missing:
        raise DatasetFormatError(f"scene file listed in megadepth_test_1500.txt not found: {missing[0]}")
    scenes = [(f, _load_npz(f, allow_pickle=True)) for f in scene_files]
    for path, scene in scenes:
        absent = {"pair_infos", "intrinsics", "poses", "image_paths"} - set(scene)
        if absent:
            raise DatasetFormatError(
                f"{path} lacks the key(s) {sorted(absent)} of a MegaDepth scene-info file"
            )
    first_image = next(str(p) for p in scenes[0][1]["image_paths"] if p is not None)
    image_root = next((r for r in (root, root / "test") if (r / first_image).is_file()), root)
    pairs = []
    for path, scene in scenes:
        for entry in scene["pair_infos"]:
            i, j = (int(k) for k in entry[0])
            what = f"{path.name} pair ({i}, {j})"
            name0, name1 = str(scene["image_paths"][i]), str(scene["image_paths"][j])
            K0 = gt_array(scene["intrinsics"][i], (3, 3), f"{what} intrinsics[{i}]")
            K1 = gt_array(scene["intrinsics"][j], (3, 3), f"{what} intrinsics[{j}]")
            P0 = gt_array(scene["poses"][i], (4, 4), f"{what} poses[{i}]")
            P1 = gt_array(scene["poses"][j], (4, 4), f"{what} poses[{j}]")
            gt = {"K0": K0, "K1": K1, "T_0to1": P1 @ np.linalg.inv(P0)}
            pairs.append(BenchmarkPair.at(len(pairs), image_root, name0, name1, gt))
    set_eval_scales(pairs, image_root, MEGADEPTH_LONG_SIDE, side="longer")
    return Benchmark("megadepth-1500", "relative_pose", "megadepth-1500", root, pairs)


# --- ScanNet-1500 -----------------------------------------------------------------------------


def read_scannet_1500(root: Path) -> Benchmark | None:
    """ScanNet-1500 in LoFTR's ``test.npz`` format with RoMa's image layout (see the module docstring)."""
    npz = next((p for p in (root / "test.npz", root / "scannet_test_1500" / "test.npz") if p.is_file()), None)
    if npz is None:
        return None
    data = _load_npz(npz, allow_pickle=False)
    if not {"name", "rel_pose"} <= set(data):
        return None
    names, rel_poses = np.asarray(data["name"]), np.asarray(data["rel_pose"], dtype=np.float64)
    if names.ndim != 2 or names.shape[1] != 4 or len(rel_poses) != len(names):
        raise DatasetFormatError(
            f"{npz}: 'name' must be (N, 4) and 'rel_pose' have N rows, got {names.shape}"
        )
    rel_poses = rel_poses.reshape(len(names), -1)
    if rel_poses.shape[1] not in (12, 16):
        raise DatasetFormatError(
            f"{npz}: 'rel_pose' rows must hold a 3x4 or 4x4 matrix, got {rel_poses.shape}"
        )
    scans = root / "scans_test"
    intrinsics: dict[str, np.ndarray] = {}
    pairs = []
    for index, (row, pose) in enumerate(zip(names, rel_poses, strict=True)):
        scene = f"scene{int(row[0]):04d}_{int(row[1]):02d}"
        if scene not in intrinsics:
            k_file = scans / scene / "intrinsic" / "intrinsic_color.txt"
            if not k_file.is_file():
                raise DatasetFormatError(f"ScanNet intrinsics not found: {k_file}")
            K = _read_matrix(k_file)
            intrinsics[scene] = gt_array(K[:3, :3] if K.shape == (4, 4) else K, (3, 3), str(k_file))
        T = np.eye(4)
        T[: len(pose) // 4] = pose.reshape(-1, 4)
        name0 = f"scans_test/{scene}/color/{int(row[2])}.jpg"
        name1 = f"scans_test/{scene}/color/{int(row[3])}.jpg"
        gt = {"K0": intrinsics[scene], "K1": intrinsics[scene], "T_0to1": T}
        pairs.append(BenchmarkPair.at(index, root, name0, name1, gt))
    set_eval_scales(pairs, root, SCANNET_SHORT_SIDE, side="shorter")
    return Benchmark("scannet-1500", "relative_pose", "scannet-1500", root, pairs)


# --- HPatches sequences -----------------------------------------------------------------------


def read_hpatches(root: Path) -> Benchmark | None:
    """HPatches full-image sequences (see the module docstring)."""
    seq_root = _first_dir(root / "hpatches-sequences-release") or root
    sequences = sorted(d for d in seq_root.iterdir() if d.is_dir() and (d / "1.ppm").is_file())
    if not sequences:
        return None
    pairs = []
    for seq in sequences:
        if seq.name in HPATCHES_SKIPPED:
            continue
        for k in range(2, 7):
            h_file = seq / f"H_1_{k}"
            if not h_file.is_file():
                raise DatasetFormatError(f"HPatches homography file not found: {h_file}")
            name0, name1 = f"{seq.name}/1.ppm", f"{seq.name}/{k}.ppm"
            gt = {"H_0to1": gt_array(_read_matrix(h_file), (3, 3), str(h_file))}
            pairs.append(BenchmarkPair.at(len(pairs), seq_root, name0, name1, gt))
    set_eval_scales(pairs, seq_root, HPATCHES_SHORT_SIDE, side="shorter")
    return Benchmark("hpatches", "homography", "hpatches", seq_root, pairs)


# --- WxBS -------------------------------------------------------------------------------------


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise DatasetFormatError(f"no image '{stem}.*' in {folder}")


def read_wxbs(root: Path) -> Benchmark | None:
    """WxBS v1.1 folders with hand-labelled correspondences (see the module docstring)."""
    base = _first_dir(root / "v1.1") or root
    corr_files = sorted(base.glob("*/*/corrs.txt"))
    if not corr_files:
        return None
    pairs = []
    for index, corr_file in enumerate(corr_files):
        folder = corr_file.parent
        image0, image1 = _find_image(folder, "01"), _find_image(folder, "02")
        name0, name1 = str(image0.relative_to(base)), str(image1.relative_to(base))
        gt = {"corrs_0to1": gt_array(_read_matrix(corr_file), (-1, 4), str(corr_file))}
        pairs.append(BenchmarkPair.at(index, base, name0, name1, gt))
    return Benchmark("wxbs", "gt_correspondences", "wxbs", base, pairs)


READERS = (read_megadepth_1500, read_scannet_1500, read_hpatches, read_wxbs)


def load_benchmark(path) -> Benchmark:
    """Read a benchmark folder (or a ``pairs.json`` file) of any supported layout.

    Raises :class:`DatasetFormatError` listing the supported layouts when none matches.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return read_pairs_json(path)
    if not path.is_dir():
        raise DatasetFormatError(f"benchmark folder not found: {path}")
    if (path / "pairs.json").is_file():
        return read_pairs_json(path / "pairs.json")
    for reader in READERS:
        benchmark = reader(path)
        if benchmark is not None:
            return benchmark
    raise DatasetFormatError(
        f"{path} is not a benchmark folder. Expected one of: a pairs.json file; {LAYOUT_HELP}"
    )
