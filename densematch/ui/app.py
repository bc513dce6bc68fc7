"""The Gradio page of ``densematch ui``: match two images with any registered model, or compare several.

Gradio is an optional extra (``pip install 'densematch[ui]'``) and is imported only by :func:`build_app`
and :func:`launch`. The page makes no outside requests: analytics, sharing and SSR are off and the theme
uses system fonts. Its HTTP API (``/gradio_api``) has two endpoints, ``/match`` and ``/compare``.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DensematchError, WeightsError, require
from ..matchers import resolve_device
from ..weights import cache_dir
from .library import ModelChoice, default_image_dirs, default_model, example_pairs, model_choices
from .pictures import tile
from .session import GEOMETRIES, MatcherCache, MatchSettings, check_image, run_match

log = logging.getLogger(__name__)
# for a process that serves the page (set by `densematch ui` before Gradio is imported); the page itself
# passes analytics_enabled=False, which also skips Gradio's version check
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}


@dataclass(frozen=True)
class UiConfig:
    """How the page is served and what it may do.

    Attributes:
        host: the interface to listen on (default loopback only; "0.0.0.0" exposes it to the network).
        port: TCP port.
        image_dirs: folders whose images are offered as example pairs (``pairs.json`` or name order).
        device: torch device for the models ("auto": CUDA when available).
        max_pixels: larger uploads are refused with a message (decoded images must fit in memory).
        max_upload_mb: Gradio's upload size limit.
        allow_downloads: fetch missing published weights on first use (off: the page stays offline and
            lists such models with the reason).
        workdir: where the downloads are written (default: a new temporary folder).
    """

    host: str = "127.0.0.1"
    port: int = 7860
    image_dirs: tuple[Path, ...] = field(default_factory=lambda: tuple(default_image_dirs()))
    device: str = "auto"
    max_pixels: int = 40_000_000
    max_upload_mb: int = 50
    allow_downloads: bool = False
    workdir: Path | None = None


def _models_table(choices: list[ModelChoice]) -> str:
    rows = ["| model | kind | weights | file or reason |", "| --- | --- | --- | --- |"]
    for c in choices:
        where = c.where if c.ready else c.reason()
        rows.append(f"| `{c.name}` | {c.kind} | {c.status} | {where.replace('|', '/') or '-'} |")
    return "\n".join(rows)


class Runner:
    """The page's callbacks, outside Gradio's layout code: one shared matcher cache and output folder."""

    def __init__(self, config: UiConfig):
        self.config = config
        self.cache = MatcherCache(resolve_device(config.device))
        self._tmp = None if config.workdir else tempfile.TemporaryDirectory(prefix="densematch-ui-")
        self.workdir = Path(config.workdir or self._tmp.name)  # removed with the runner when temporary
        self._runs = 0

    def _check_model(self, name: str, options: str) -> None:
        if "weights=" in options.replace(" ", ""):  # the user passes files (or weights=false) themselves
            return
        choice = next((c for c in model_choices() if c.name == name), None)
        if choice is None:
            raise DensematchError(f"unknown model '{name}'")
        if not choice.ready and not (self.config.allow_downloads and choice.status == "needs download"):
            raise WeightsError(f"{name} cannot run offline (weights: {choice.reason()}); copy the file into "
                               f"{cache_dir()} or start `densematch ui --allow-downloads`")

    def run(self, image0, image1, models: list[str], settings: dict, progress) -> tuple[list, str]:
        """Run each model on the pair; ``(results, message)`` where a failing model adds a line to the message."""
        a = check_image(image0, "image 0", self.config.max_pixels)
        b = check_image(image1, "image 1", self.config.max_pixels)
        if not models:
            raise DensematchError("choose at least one model")
        self._runs += 1
        results, problems = [], []
        for i, name in enumerate(models):
            def step(fraction, text, i=i):
                progress((i + fraction) / len(models), desc=text)
            try:
                self._check_model(name, settings["options"])
                run_settings = MatchSettings(model=name, **settings)
                results.append(run_match(a, b, run_settings, self.cache, self.workdir / f"run{self._runs:04d}", step))
            except DensematchError as exc:
                problems.append(f"**{name}**: {exc}")
            except Exception as exc:  # a bug or a model failure: one line in the page, the traceback in the log
                log.exception("densematch ui: %s failed", name)
                problems.append(f"**{name}** failed: {type(exc).__name__}: {exc} (details in the server log)")
        return results, "\n\n".join(problems)


def _guard(function, n_outputs: int):
    """Turn any input problem into a message in the first output instead of a Gradio error box."""
    @functools.wraps(function)  # Gradio reads the signature (the gr.Progress argument) through __wrapped__
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DensematchError as exc:
            return (f"**Cannot match:** {exc}", *([None] * (n_outputs - 1)))
        except Exception as exc:
            log.exception("densematch ui: request failed")
            return (f"**Cannot match:** {type(exc).__name__}: {exc}", *([None] * (n_outputs - 1)))
    return wrapped


def _lenient(image):
    """Let unreadable uploads of a ``gr.Image`` reach :func:`check_image` (a message in the page) instead of
    failing in Gradio's preprocessing (an error box). Patched on the instance: subclassing a Gradio
    component would make Gradio write a ``.pyi`` stub next to this file."""
    strict = image.preprocess

    def preprocess(payload):
        try:
            return strict(payload)
        except Exception:
            return None if payload is None or payload.path is None else str(payload.path)

    image.preprocess = preprocess
    return image


def build_app(config: UiConfig | None = None):
    """The Gradio Blocks of the page (not started; see :func:`launch`)."""
    config = config or UiConfig()
    gr = require("gradio", "ui", "densematch ui")
    runner = Runner(config)

    choices = model_choices()
    menu = [(c.label, c.name) for c in choices]
    ready = [c.name for c in choices if c.ready]

    def settings(num, geometry, threshold, method, k0, k1, options) -> dict:
        return {"num": int(num), "geometry": geometry, "threshold_px": float(threshold), "method": method,
                "intrinsics0": k0 or "", "intrinsics1": k1 or "", "options": options or ""}

    def on_match(image0, image1, model, num, geometry, threshold, method, k0, k1, options,
                 progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (how Gradio injects it)
        results, problems = runner.run(image0, image1, [model], settings(num, geometry, threshold, method, k0,
                                                                         k1, options), progress)
        if not results:
            return f"**Cannot match:** {problems}", None, gr.update(value=None, visible=False), None, None
        result = results[0]
        s = result.summary
        text = (f"**{s['model']}**: {s['num_matches']} matches, {s['num_inliers']} inliers ({s['geometry']}); "
                f"load {s['seconds_load']:.2f} s, match {s['seconds_match']:.2f} s, "
                f"geometry {s['seconds_geometry']:.3f} s")
        dense = gr.update(value=result.dense_picture, visible=result.dense_picture is not None)
        return text, result.matches_picture, dense, s, [str(p) for p in result.files]

    def on_compare(image0, image1, models, num, geometry, threshold, method, k0, k1, options,
                   progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (how Gradio injects it)
        results, problems = runner.run(image0, image1, list(models or []), settings(num, geometry, threshold,
                                                                                    method, k0, k1, options),
                                       progress)
        row = tile([r.matches_picture for r in results]) if results else None
        dense = [r.dense_picture for r in results if r.dense_picture is not None]
        table = [[r.summary[k] for k in ("model", "num_matches", "num_inliers", "seconds_load", "seconds_match")]
                 for r in results]
        files = [str(p) for r in results for p in r.files]
        return (problems or f"Compared {len(results)} models.",
                row, gr.update(value=tile(dense, columns=1) if dense else None, visible=bool(dense)), table,
                files or None)

    with gr.Blocks(title="densematch: compare matchers", analytics_enabled=False) as demo:
        gr.Markdown("## densematch: compare image matchers on your own images\nUpload two images (or pick an "
                    "example pair), choose a model and press **Match**; the **Compare** tab runs several models.")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    image0, image1 = (_lenient(gr.Image(type="filepath", image_mode=None, label=f"image {i}",
                                                        height=280, sources=["upload", "clipboard"]))
                                      for i in (0, 1))
                pairs = example_pairs(list(config.image_dirs))
                if pairs:
                    gr.Examples([[str(a), str(b)] for a, b in pairs], inputs=[image0, image1],
                                label="example pairs (click one)", examples_per_page=4)
            with gr.Column(scale=2):
                model = gr.Dropdown(menu, value=default_model(choices), label="model")
                match_button = gr.Button("Match", variant="primary")
                num = gr.Slider(50, 20000, value=2000, step=50, label="matches",
                                info="dense models: sampled; semi-dense: at most this many; classical: keypoints")
                geometry = gr.Radio(list(GEOMETRIES), value="fundamental", label="geometry",
                                    info="fitted robustly; its inliers are drawn green, outliers red")
                with gr.Row():
                    threshold = gr.Number(value=1.0, minimum=0.01, label="inlier threshold (px)")
                    method = gr.Dropdown(["opencv-magsac", "opencv-ransac", "poselib"], value="opencv-magsac",
                                         label="robust estimator")
                with gr.Accordion("intrinsics (essential matrix) and model options", open=False):
                    k0 = gr.Textbox(label="image 0: fx fy cx cy (blank: guess)", placeholder="1200 1200 639.5 479.5")
                    k1 = gr.Textbox(label="image 1: fx fy cx cy (blank: guess)")
                    options = gr.Textbox(label="model options key=value, ...",
                                         placeholder="coarse_res=280, weights=/path/to/file.pth")
                with gr.Accordion(f"models: {len(ready)} of {len(choices)} ready offline", open=False):
                    gr.Markdown(_models_table(choices))
        with gr.Tab("Match"):
            match_message = gr.Markdown(elem_id="match-message")
            pictures = {"format": "png", "interactive": False, "show_label": False,  # captions are in the pictures
                        "buttons": ["download", "fullscreen"]}
            match_picture = gr.Image(label="matches (green inlier, red outlier)", **pictures)
            dense_picture = gr.Image(label="dense warp and certainty", visible=False, **pictures)
            with gr.Row():
                summary = gr.JSON(label="summary")
                match_files = gr.File(label="downloads: matches .npz, geometry .json", file_count="multiple")
        with gr.Tab("Compare"):
            with gr.Row():
                compare_models = gr.CheckboxGroup(menu, value=ready[:2], label="models", scale=3)
                compare_button = gr.Button("Compare", variant="primary", scale=1)
            compare_message = gr.Markdown(elem_id="compare-message")
            compare_picture = gr.Image(label="matches, one column per model", **pictures)
            compare_dense = gr.Image(label="dense warps and certainty", visible=False, **pictures)
            table = gr.Dataframe(headers=["model", "matches", "inliers", "load s", "match s"], label="counts")
            compare_files = gr.File(label="downloads", file_count="multiple")
        common = [num, geometry, threshold, method, k0, k1, options]
        match_button.click(_guard(on_match, 5), [image0, image1, model, *common],
                           [match_message, match_picture, dense_picture, summary, match_files],
                           api_name="match", concurrency_id="models", concurrency_limit=1)
        compare_button.click(_guard(on_compare, 5), [image0, image1, compare_models, *common],
                             [compare_message, compare_picture, compare_dense, table, compare_files],
                             api_name="compare", concurrency_id="models", concurrency_limit=1)
    return demo


def launch(config: UiConfig | None = None, block: bool = True):
    """Build and serve the page on ``config.host:config.port``; returns the Blocks (already started)."""
    config = config or UiConfig()
    demo = build_app(config)
    gr = require("gradio", "ui", "densematch ui")
    theme = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    demo.queue(default_concurrency_limit=1).launch(
        server_name=config.host, server_port=config.port, share=False, ssr_mode=False, mcp_server=False,
        inbrowser=False, quiet=True, show_error=False, prevent_thread_lock=not block, theme=theme,
        allowed_paths=[str(p) for p in config.image_dirs], max_file_size=f"{config.max_upload_mb}mb",
        footer_links=[])
    return demo
