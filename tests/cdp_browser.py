"""A very small Chrome DevTools Protocol client for the UI test: open a page, run JavaScript, click, wait,
screenshot, and record every URL the page requests."""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.request
from pathlib import Path


class Browser:
    """One page of a headless Chromium started with ``--remote-debugging-port``."""

    def __init__(self, socket):
        self.socket = socket
        self.ids = itertools.count(1)
        self.requests: list[str] = []

    @classmethod
    def connect(cls, websocket_module, port: int, timeout: float = 90.0) -> Browser:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                    pages = [t for t in json.load(response) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not open its debugging port {port}")
            time.sleep(0.3)
        browser = cls(websocket_module.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=120,
                                                         suppress_origin=True))
        browser.call("Page.enable")
        browser.call("Network.enable")
        return browser

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result, recording network events that arrive meanwhile."""
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str, width: int = 1280, height: int = 1500) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"javascript failed: {result['exceptionDetails'].get('text')}: {expression}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return Boolean({condition}); }} catch (e) {{ return false; }} }})()"
        while not self.evaluate(guarded):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page condition not met within {timeout:.0f} s: {condition}")
            time.sleep(0.25)

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                              "if (!e) return false; e.scrollIntoView(); e.click(); return true; })()")
        if not found:
            raise LookupError(f"no element matches {selector}")

    def click_text(self, selector: str, text: str, exact: bool = False) -> None:
        """Click the first element matching ``selector`` whose visible text is (or contains) ``text``."""
        test = "t === want" if exact else "t.includes(want)"
        found = self.evaluate(
            f"(() => {{ const want = {json.dumps(text)}; for (const e of document.querySelectorAll("
            f"{json.dumps(selector)})) {{ const t = (e.innerText || '').trim(); if ({test}) "
            "{ e.scrollIntoView(); e.click(); return true; } } return false; })()")
        if not found:
            raise LookupError(f"no {selector} with text {text!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(data))
