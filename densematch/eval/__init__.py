"""Benchmarks: reading benchmark folders, the standard metrics, and running a matcher over pairs.

>>> from densematch.eval import load_benchmark, run_benchmark
>>> from densematch.matchers import get_matcher
>>> result = run_benchmark(load_benchmark("data/megadepth"), get_matcher("sift"), {"matcher": "sift"}, "out")
"""

from .benchmark import BenchmarkOptions, BenchmarkResult, format_results, run_benchmark
from .datasets import Benchmark, BenchmarkPair, DatasetFormatError, read_pairs_json
from .layouts import load_benchmark
from .metrics import accuracy_curve, error_auc, mean_average_accuracy, pck
from .predictions import Prediction, PredictionCache, PredictionCacheError
from .tasks import DEFAULT_ESTIMATORS, summarize

__all__ = [
    "DEFAULT_ESTIMATORS",
    "Benchmark",
    "BenchmarkOptions",
    "BenchmarkPair",
    "BenchmarkResult",
    "DatasetFormatError",
    "Prediction",
    "PredictionCache",
    "PredictionCacheError",
    "accuracy_curve",
    "error_auc",
    "format_results",
    "load_benchmark",
    "mean_average_accuracy",
    "pck",
    "read_pairs_json",
    "run_benchmark",
    "summarize",
]
