"""``densematch ui``: the run logic without Gradio, then the served page through its HTTP API and in a real
headless browser (each skips cleanly when Gradio or Chromium is absent)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from densematch.errors import ConfigError, ImageReadError, InputShapeError
from densematch.matchers.base import DenseField, Matches, PairMatcher
from densematch.registry import ModelEntry, WeightFile
from densematch.ui.library import example_pairs, model_choices
from densematch.ui.pictures import BAR, draw_dense, draw_inliers, tile
from densematch.ui.session import MatcherCache, MatchSettings, check_image, intrinsics, parse_options, run_match
from densematch.weights import weights_status

H_0TO1 = np.array([[0.95, 0.06, 12.0], [-0.04, 1.02, 6.0], [2e-5, 1e-5, 1.0]])


def _texture(width=320, height=240, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    for _ in range(160):  # random filled shapes: plenty of SIFT corners and blobs
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = tuple(int(c) for c in rng.integers(0, (width, height)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(3, 18)), colour, -1)
        else:
            size = rng.integers(4, 30, 2)
            cv2.rectangle(image, centre, (centre[0] + int(size[0]), centre[1] + int(size[1])), colour, -1)
    return image


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory) -> Path:
    """Two views of a textured plane related by ``H_0TO1``, listed in a pairs.json."""
    folder = tmp_path_factory.mktemp("pair")
    image0 = _texture()
    image1 = cv2.warpPerspective(image0, H_0TO1, (300, 250), borderValue=(0, 0, 0))
    Image.fromarray(image0).save(folder / "a.png")
    Image.fromarray(image1).save(folder / "b.png")
    (folder / "pairs.json").write_text(json.dumps({"pairs": [{"image0": "a.png", "image1": "b.png"}]}))
    return folder


# --- the run logic, no Gradio ------------------------------------------------------------------------------


def test_parse_options_and_intrinsics():
    assert parse_options("coarse_res=280, amp=false\nname=x, scale=0.5") == {
        "coarse_res": 280, "amp": False, "name": "x", "scale": 0.5}
    assert parse_options("") == {}
    with pytest.raises(ConfigError, match="key=value"):
        parse_options("coarse_res 280")
    K, given = intrinsics("500 510 100 80", (200, 160))
    assert given and K[0, 0] == 500 and K[1, 1] == 510 and K[0, 2] == 100 and K[1, 2] == 80
    assert intrinsics("300", (200, 160))[0][[0, 1, 0, 1], [0, 1, 2, 2]].tolist() == [300, 300, 99.5, 79.5]
    assert intrinsics("300, 90, 70", (200, 160))[0][[0, 1, 0, 1], [0, 1, 2, 2]].tolist() == [300, 300, 90, 70]
    K, given = intrinsics("", (200, 160))
    assert not given and K[0, 0] == pytest.approx(240) and K[0, 2] == pytest.approx(99.5)
    for bad in ("1 2", "a b c d", "-5"):
        with pytest.raises(ConfigError):
            intrinsics(bad, (200, 160))
    with pytest.raises(ConfigError, match="between 1 and"):
        MatchSettings(model="sift", num=0)
    with pytest.raises(ConfigError, match="unknown geometry"):
        MatchSettings(model="sift", geometry="affine")


def test_bad_uploads_get_one_line_messages(tmp_path, pair_dir):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"image 0 \('notes.txt'\) is not an image file"):
        check_image(text, "image 0", 10**7)
    with pytest.raises(InputShapeError, match=r"image 1 is 320x240 \(0 MP\); the limit is"):
        check_image(pair_dir / "a.png", "image 1", 1000)
    with pytest.raises(InputShapeError, match="no image given"):
        check_image(None, "image 0", 10**7)
    assert check_image(pair_dir / "a.png", "image 0", 10**7).size == (320, 240)


def test_example_pairs_from_pairs_json_or_name_order(tmp_path, pair_dir):
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("c.jpg", "a.jpg", "b.png", "notes.txt"):
        (loose / name).write_bytes(b"")
    pairs = example_pairs([pair_dir, loose, tmp_path / "missing"])
    assert pairs == [(pair_dir / "a.png", pair_dir / "b.png"), (loose / "a.jpg", loose / "b.png")]


def test_weights_status_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "here.pth").write_bytes(b"x")
    shipped = tmp_path / "shipped.pth"
    shipped.write_bytes(b"x")
    here = WeightFile(url="https://example.invalid/here.pth", file_name="here.pth")
    remote = WeightFile(url="https://example.invalid/far.pth", file_name="far.pth")
    local = WeightFile(url=str(shipped), file_name="shipped.pth")
    entry = lambda **kw: ModelEntry(name="m", factory="x:y", description="", **kw)  # noqa: E731
    assert weights_status(entry(kind="classical")) == ("none needed", "")
    assert weights_status(entry(weights={"matcher": here})) == ("cached", str(tmp_path / "hub/checkpoints/here.pth"))
    assert weights_status(entry(weights={"matcher": local})) == ("installed", str(shipped))
    packaged = WeightFile(url="package:densematch/__init__.py", file_name="x.pth")  # any file of the package
    status, where = weights_status(entry(weights={"matcher": packaged}))
    assert status == "installed" and Path(where).is_file() and Path(where).parent.name == "densematch"
    assert weights_status(entry(weights={"matcher": here, "dinov2": remote})) == ("needs download", remote.url)
    assert weights_status(entry(recipe="m:R")) == ("train it here", "")


def test_every_registered_model_is_offered_with_a_status():
    from densematch.matchers import list_matchers

    choices = model_choices()
    assert sorted(c.name for c in choices) == sorted(list_matchers())
    assert [c.ready for c in choices] == sorted((c.ready for c in choices), reverse=True)  # ready ones first
    for c in choices:
        assert (c.reason() == "") == c.ready
        assert c.name in c.label and c.status in c.label


def test_pictures_colour_inliers_and_warp_back(pair_dir):
    image0, image1 = Image.open(pair_dir / "a.png").convert("RGB"), Image.open(pair_dir / "b.png").convert("RGB")
    kpts0 = np.array([[50.0, 60.0], [200.0, 100.0]])
    picture = draw_inliers(image0, image1, kpts0, kpts0, np.array([True, False]), "t", height=240)
    assert picture.shape == (BAR + 240, 320 + round(300 * 240 / 250), 3)  # both images at height 240
    assert (np.abs(picture[BAR + 60, 50].astype(int) - (46, 204, 64)).sum() < 60)  # inlier dot is green
    assert (np.abs(picture[BAR + 100, 200].astype(int) - (240, 60, 50)).sum() < 60)  # outlier dot is red
    # the exact warp of image 0 into image 1 pulls image 1 back onto image 0 where certain
    u, v = np.meshgrid(np.arange(320.0), np.arange(240.0))
    points = np.stack((u, v, np.ones_like(u)), -1) @ H_0TO1.T
    warp = (points[..., :2] / points[..., 2:]).astype(np.float32)
    certainty = np.ones((240, 320), np.float32)
    certainty[:, :40] = 0
    panels = draw_dense(image0, image1, warp, certainty, "t", height=240)[BAR:]
    assert panels.shape == (240, 960, 3)
    inside = (warp[..., 0] < 295) & (warp[..., 1] < 245) & (certainty > 0)
    diff = np.abs(panels[:, 320:640].astype(int) - panels[:, :320].astype(int)).mean(-1)
    assert np.median(diff[inside]) < 8
    assert (panels[:, 320:360] == 255).all()  # zero certainty fades to white


def test_tile_rows_of_pictures():
    a, b, c = (np.full((h, w, 3), v, np.uint8) for h, w, v in ((10, 20, 1), (12, 30, 2), (10, 5, 3)))
    out = tile([a, b, c], columns=2, gap=4)
    assert out.shape == (12 + 4 + 10, 20 + 4 + 30, 3)
    assert (out[:10, :20] == 1).all() and (out[:12, 24:54] == 2).all() and (out[16:26, :5] == 3).all()
    assert (out[10:12, :20] == 255).all() and (out[16:, 5:] == 255).all()  # padding is white


class FakeDense(PairMatcher):
    """A dense matcher that knows the true homography: every pixel matched exactly."""

    name = "fake_dense"

    def match_pair_and_dense(self, image0, image1):
        (w0, h0), (w1, h1) = image0.size, image1.size
        u, v = np.meshgrid(np.arange(w0, dtype=np.float64), np.arange(h0, dtype=np.float64))
        points = np.stack((u, v, np.ones_like(u)), -1) @ H_0TO1.T
        uv1 = points[..., :2] / points[..., 2:]
        keep = (uv1[..., 0] < w1 - 1) & (uv1[..., 1] < h1 - 1) & (uv1.min(-1) > 0)
        idx = np.flatnonzero(keep.ravel())[::97]
        kpts0 = np.stack((u.ravel()[idx], v.ravel()[idx]), -1)
        matches = Matches(kpts0, uv1.reshape(-1, 2)[idx], np.ones(len(idx)), image0.size, image1.size)
        return matches, DenseField(uv1.astype(np.float32), keep.astype(np.float32))

    def match_pair(self, image0, image1):
        return self.match_pair_and_dense(image0, image1)[0]


def test_matcher_cache_shares_the_model_across_num():
    class Sampled:
        def __init__(self, num):
            self.num, self.model = num, object()

    cache = MatcherCache("cpu", capacity=2)
    first = cache._items[("m", 100, ())] = Sampled(100)
    other, seconds = cache.get("m", 300, {})
    assert other is not first and other.num == 300 and other.model is first.model and seconds == 0.0
    assert first.num == 100 and cache.get("m", 100, {})[0] is first
    cache._items[("n", 5, ())] = Sampled(5)
    assert len(cache._items) == 3
    cache.get("n", 5, {})  # a hit still trims the cache to its capacity, oldest first
    assert list(cache._items) == [("m", 100, ()), ("n", 5, ())]


@pytest.mark.parametrize("geometry", ["homography", "fundamental", "essential", "none"])
def test_run_match_writes_the_library_npz_and_geometry_json(tmp_path, pair_dir, geometry):
    cache = MatcherCache("cpu")
    settings = MatchSettings(model="fake_dense", num=500, geometry=geometry, threshold_px=1.0)
    cache._items[("fake_dense", 500, ())] = FakeDense()  # as if built by get_matcher
    image0, image1 = (check_image(pair_dir / n, n, 10**7) for n in ("a.png", "b.png"))
    result = run_match(image0, image1, settings, cache, tmp_path)
    npz_path, json_path = result.files
    saved, geo = np.load(npz_path), json.loads(json_path.read_text())
    assert set(saved.files) == {"kpts0", "kpts1", "certainty", "size0", "size1", "inliers"}
    assert tuple(saved["size0"]) == (320, 240) and tuple(saved["size1"]) == (300, 250)
    n = result.summary["num_matches"]
    assert n == len(saved["kpts0"]) > 100 and geo["num_matches"] == n
    if geometry == "none":
        assert geo["num_inliers"] is None
    else:  # exact correspondences of a plane: (nearly) all inliers of every model
        assert geo["num_inliers"] == int(saved["inliers"].sum()) >= 0.95 * n
    if geometry == "homography":
        H = np.array(geo["H_0to1"])
        assert np.allclose(H / H[2, 2], H_0TO1, atol=1e-3)
    assert result.dense_picture.shape == (BAR + 300, 3 * 400, 3)  # three panels of image 0 at height 300


# --- the served page -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(pair_dir, tmp_path_factory):
    """The page served on a free loopback port; records every outside connection the server attempts."""
    pytest.importorskip("gradio", reason="the 'ui' extra (gradio) is not installed")
    from densematch.ui.app import UiConfig, launch

    outside = []
    connect = socket.socket.connect

    def watched(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            outside.append(address)
        return connect(self, address)

    socket.socket.connect = watched
    port = _free_port()
    config = UiConfig(port=port, image_dirs=(pair_dir,), device="cpu", workdir=tmp_path_factory.mktemp("ui"))
    demo = launch(config, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", outside
    finally:
        demo.close()
        socket.socket.connect = connect


@pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")  # pandas 3 vs gradio internals
def test_http_api_matches_compares_and_explains(served, pair_dir, tmp_path):
    from gradio_client import Client, handle_file

    from densematch import registry

    url, outside = served
    client = Client(url, verbose=False, download_files=str(tmp_path))
    a, b = handle_file(str(pair_dir / "a.png")), handle_file(str(pair_dir / "b.png"))
    common = ("homography", 2.0, "opencv-ransac", "", "", "")
    message, picture, _, summary, files = client.predict(a, b, "sift", 2000, *common, api_name="/match")
    assert summary["model"] == "sift" and summary["num_matches"] >= 50, message
    assert summary["num_inliers"] >= 0.6 * summary["num_matches"]  # a plane: SIFT matches fit the homography
    assert f"{summary['num_matches']} matches" in message
    npz = next(Path(f) for f in files if f.endswith(".npz"))
    geo = json.loads(next(Path(f) for f in files if f.endswith(".json")).read_text())
    assert len(np.load(npz)["kpts0"]) == summary["num_matches"] == geo["num_matches"]
    assert np.allclose(np.array(geo["H_0to1"]), H_0TO1, atol=0.05 * np.abs(H_0TO1).max())
    assert Image.open(picture).size[1] > BAR

    # a second configuration: the keypoint cap bounds the matches
    _, _, _, capped, _ = client.predict(a, b, "sift", 60, *common, api_name="/match")
    assert 0 < capped["num_matches"] <= 60

    # compare: sift, the embedded default when registered and ready, and one model that cannot run offline
    choices = {c.name: c for c in model_choices()}
    default = getattr(registry, "DEFAULT_MODEL", None)
    models = ["sift"] + ([default] if default in choices and choices[default].ready else [])
    missing = [c for c in choices.values() if not c.ready][:1]
    message, gallery, _, table, files = client.predict(a, b, models + [c.name for c in missing], 500, *common,
                                                       api_name="/compare")
    assert [row[0] for row in table["data"]] == models
    assert all(row[1] > 0 for row in table["data"])
    assert Image.open(gallery).size[0] > len(models) * 300 and len(files) == 2 * len(models)  # side by side
    for c in missing:
        assert c.name in message and "cannot run offline" in message

    # bad input: a message in the page, not an error
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    message, *rest = client.predict(handle_file(str(text)), b, "sift", 100, *common, api_name="/match")
    assert "is not an image file" in message and "Traceback" not in message and rest[0] is None
    message, *_ = client.predict(a, b, "sift", 100, "essential", 1.0, "poselib", "1 2", "", "", api_name="/match")
    assert "intrinsics '1 2'" in message
    assert outside == []  # the server never connected anywhere but loopback


@pytest.mark.slow
def test_page_in_headless_chromium(served, tmp_path):
    """Load the page, pick the example pair, press Match, wait for the result and save a screenshot."""
    websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no chromium browser found (apt-get install chromium)")
    from cdp_browser import Browser

    url, _ = served
    port = _free_port()
    process = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}",
                                "--window-size=1280,1500", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        browser = Browser.connect(websocket, port)
        browser.open(url)
        browser.wait_for("document.querySelector('table tbody tr td') && document.body.innerText.includes('Match')")
        shown = browser.evaluate("document.querySelectorAll('img').length")
        browser.click("table tbody tr td")  # the example pair (a row of gr.Examples)
        browser.wait_for(f"document.querySelectorAll('img').length >= {shown + 2}")  # both inputs show it
        shot = Path(os.environ.get("DENSEMATCH_UI_SCREENSHOT", tmp_path / "ui.png"))
        message = "document.querySelector('#match-message').innerText"
        try:
            for attempt in range(3):  # on a loaded machine the first click can land before the page listens
                browser.click_text("button", "Match", exact=True)
                try:
                    browser.wait_for(f"{message}.trim().length > 0", timeout=60)  # progress or result shown
                    break
                except TimeoutError:
                    if attempt == 2:
                        raise
            browser.wait_for(f"{message}.match(/inliers|Cannot match/)", timeout=300)  # a result or why not
        finally:
            browser.screenshot(shot)
        text = browser.evaluate(message)
        assert "inliers" in text, text
        browser.wait_for("document.querySelectorAll('img').length >= " + str(shown + 3))  # the result picture
        browser.screenshot(shot)
        outside = [u for u in browser.requests if not u.startswith((url, "data:", "blob:", "about:"))]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert text.startswith("sift:") and " matches, " in text, text
    assert shot.stat().st_size > 10_000
    assert outside == [], outside  # the page loads nothing from outside


def test_cli_without_gradio_says_how_to_install(monkeypatch, capsys):
    import sys

    from densematch.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` fail as if not installed
    assert main(["ui", "--port", "7999"]) == 2
    error = capsys.readouterr().err
    assert "pip install 'densematch[ui]'" in error and "Traceback" not in error
