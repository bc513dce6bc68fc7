"""Running a matcher over a benchmark: predict (cached), evaluate, write the results, format a table.

Output folder::

    OUT/predictions/     the prediction cache (:mod:`densematch.eval.predictions`)
    OUT/results.jsonl    one JSON object per pair (fields: :mod:`densematch.eval.tasks`)
    OUT/summary.json     the summary metrics plus what was run (matcher, estimator, dataset)
    OUT/curves.png       the error curves (fraction of pairs below each error) whose areas are the AUCs

Recomputing the metrics with other settings (``metrics_only`` with another estimator or pair subset) never
replaces those files: it writes ``summary.<tag>.json``, ``results.<tag>.jsonl`` and ``curves.<tag>.png``
beside them, the tag naming the estimator settings (e.g. ``poselib-0.5px``).

>>> from densematch.eval import load_benchmark, run_benchmark
>>> from densematch.matchers import get_matcher
>>> bench = load_benchmark("shared/data/kitti_odometry_00")
>>> result = run_benchmark(bench, get_matcher("sift"), {"matcher": "sift"}, "out/kitti")
>>> print(result.summary["auc@10"])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..geometry import RansacConfig
from ..io import atomic_write
from ..matchers.base import PairMatcher
from ..viz import save_rgb
from .datasets import Benchmark
from .plot import error_curves_picture
from .predictions import PredictionCache, PredictionCacheError, predict_pair
from .tasks import DEFAULT_ESTIMATORS, EVALUATORS, summarize


@dataclass(frozen=True)
class BenchmarkOptions:
    """How :func:`run_benchmark` runs.

    Attributes:
        estimator: the robust estimator; ``None`` = the task's published default
            (:data:`densematch.eval.tasks.DEFAULT_ESTIMATORS`).
        metrics_only: never run the matcher; every prediction must be in the cache.
        overwrite: delete cached predictions of another matcher configuration instead of failing.
        progress: show progress bars.
        pose_refinement: None, or "ba" to refine each relative pose by two-view bundle adjustment.
    """

    estimator: RansacConfig | None = None
    pose_refinement: str | None = None  # "ba": two-view bundle adjustment of relative poses (any matcher)
    metrics_only: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class BenchmarkResult:
    """The summary (as in ``summary.json``) and the per-pair rows (as in ``results.jsonl``)."""

    summary: dict
    rows: list[dict]
    summary_path: Path | None = None  # where the summary was written


def predict_all(
    benchmark: Benchmark, matcher: PairMatcher | None, cache: PredictionCache, options: BenchmarkOptions
) -> dict:
    """Fill the cache for every pair (running the matcher only where needed); pair_id -> Prediction."""
    predictions, missing = {}, []
    bar = tqdm(benchmark.pairs, desc=f"matching {benchmark.name}", unit="pair", disable=not options.progress)
    for pair in bar:
        need_dense = pair.has_dense_gt and matcher is not None and matcher.is_dense
        prediction = cache.load(pair.pair_id, need_dense=need_dense)  # metrics-only: whatever is cached
        if prediction is None:
            if options.metrics_only or matcher is None:
                missing.append(pair.pair_id)
                continue
            prediction = predict_pair(matcher, pair.image0, pair.image1, dense=pair.has_dense_gt)
            cache.save(pair.pair_id, prediction)
        predictions[pair.pair_id] = prediction
    if missing:
        raise PredictionCacheError(
            f"{len(missing)} pair(s) have no cached prediction in {cache.folder} (e.g. {missing[0]}); "
            "run without --metrics-only to compute them"
        )
    return predictions


def run_benchmark(
    benchmark: Benchmark,
    matcher: PairMatcher | None,
    matcher_config: dict,
    output,
    options: BenchmarkOptions | None = None,
) -> BenchmarkResult:
    """Predict (or reuse cached predictions), evaluate every pair and write the results.

    Args:
        benchmark: the pairs (:func:`densematch.eval.load_benchmark`).
        matcher: any :class:`~densematch.matchers.PairMatcher`; may be ``None`` with ``metrics_only``.
        matcher_config: JSON-serialisable description of the matcher configuration (name, weights,
            num, seed, options); guards the prediction cache and is copied into the summary.
        output: the output folder.
        options: see :class:`BenchmarkOptions`.

    Returns:
        The summary and the rows (also written to ``OUT/summary.json`` and ``OUT/results.jsonl``).
    """
    options = options or BenchmarkOptions()
    output = Path(output)
    estimator = options.estimator or DEFAULT_ESTIMATORS[benchmark.task]
    cache = PredictionCache(
        output / "predictions", {**matcher_config, "dataset": str(benchmark.root.resolve())}
    )
    cache.prepare(overwrite=options.overwrite, read_only=options.metrics_only or matcher is None)
    predictions = predict_all(benchmark, matcher, cache, options)

    if options.pose_refinement not in (None, "ba"):
        raise ValueError(f"pose_refinement must be None or 'ba', got {options.pose_refinement!r}")
    evaluate = EVALUATORS[benchmark.task]
    extra = {"refinement": options.pose_refinement} if options.pose_refinement else {}
    if extra and benchmark.task != "relative_pose":
        raise ValueError(f"pose refinement applies to relative-pose benchmarks, not {benchmark.task}")
    rows = [
        evaluate(pair, predictions[pair.pair_id], estimator, **extra)
        for pair in tqdm(benchmark.pairs, desc="evaluating", unit="pair", disable=not options.progress)
    ]
    summary = {
        "dataset": benchmark.name,
        "layout": benchmark.layout,
        "task": benchmark.task,
        "matcher": matcher_config.get("matcher"),
        **summarize(benchmark.task, rows),
        "matcher_config": cache.config,
        "estimator": estimator.to_dict(),
        "pose_refinement": options.pose_refinement,
    }
    suffix = output_suffix(output / "summary.json", summary)
    with atomic_write(output / f"results{suffix}.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, allow_nan=False) + "\n")
    with atomic_write(output / f"summary{suffix}.json", "w") as handle:
        json.dump(summary, handle, indent=2, allow_nan=False)
    picture = error_curves_picture({**summary, "_rows": rows})
    if picture is not None:
        save_rgb(output / f"curves{suffix}.png", picture)
    return BenchmarkResult(summary, rows, output / f"summary{suffix}.json")


def output_suffix(existing: Path, summary: dict) -> str:
    """``""`` when ``existing`` is absent or was computed with the same settings, else ``".<tag>"``."""
    try:
        previous = json.loads(existing.read_text())
    except (OSError, ValueError):
        return ""
    keys = ("estimator", "pose_refinement", "num_pairs", "matcher_config")
    same = all(previous.get(key) == summary.get(key) for key in keys)
    if same:
        return ""
    estimator = summary["estimator"]
    tag = f"{estimator['method']}-{estimator['threshold_px']:g}px" + ("-ba" if summary.get("pose_refinement") else "")
    if previous.get("num_pairs") != summary.get("num_pairs"):  # another pair subset: name it
        tag += f"-{summary['num_pairs']}pairs"
    return f".{tag}"


# --- printing -----------------------------------------------------------------------------------

SUMMARY_KEYS = {
    "relative_pose": ("auc@5", "auc@10", "auc@20", "pck@1px", "pck@3px", "pck@5px"),
    "homography": ("auc@3px", "auc@5px", "auc@10px"),
    "gt_correspondences": ("mAA@10px", "mAA@20px"),
}
PAIR_ERROR_KEYS = {
    "relative_pose": ("err_R_deg", "err_t_deg"),
    "homography": ("err_px",),
    "gt_correspondences": ("aa@10px", "mean_epi_err_px"),
}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.2f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def format_results(summary: dict, rows: list[dict] | None = None, max_pair_rows: int = 50) -> str:
    """A plain-text table: one line per pair (when at most ``max_pair_rows``), then the summary."""
    task = summary["task"]
    parts = []
    if rows and len(rows) <= max_pair_rows:
        errors = PAIR_ERROR_KEYS[task]
        header = ["image0", "image1", "matches", "inliers", *errors]
        body = [
            [
                r["image0"],
                r["image1"],
                _cell(r["num_matches"]),
                _cell(r["num_inliers"]),
                *(_cell(r.get(k)) for k in errors),
            ]
            for r in rows
        ]
        parts.append(_table(header, body))
    keys = [k for k in SUMMARY_KEYS[task] if summary.get(k) is not None]
    stats = ["num_pairs", "num_failed", "mean_num_matches", "mean_time_match_s"]
    header = ["dataset", "matcher", *keys, *stats]
    parts.append(_table(header, [[_cell(summary.get(k)) for k in ("dataset", "matcher", *keys, *stats)]]))
    return "\n\n".join(parts)
