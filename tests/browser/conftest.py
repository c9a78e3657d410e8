"""Headless Chromium driven over the DevTools protocol on a pipe: no extra dependencies.

`--remote-debugging-pipe` makes Chromium read CDP commands from fd 3 and write replies and
events to fd 4, NUL-separated JSON. `chromium` (one per test) starts the browser and kills
its process group by PID in `finally`; `page` opens a tab that records console errors,
uncaught exceptions, dialogs and every request the page attempts. Every wait is bounded.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--window-size=1400,1000",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    explicit = os.environ.get("ASGIPROF_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless browser process and the CDP pipe to it."""

    def __init__(self, executable: str) -> None:
        self.user_data_dir = tempfile.mkdtemp(prefix="asgiprof-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Park the child's ends above 100 (close-on-exec), then dup2 them onto 3 and 4 in
        # the child: a direct dup2 could clobber one with the other.
        child_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 100)
        child_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire_pipes() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.stderr_path = Path(self.user_data_dir) / "stderr.log"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self.user_data_dir}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=wire_pipes,  # noqa: PLW1509 - only dup2, before exec
                close_fds=False,  # our other descriptors are close-on-exec (PEP 446)
                start_new_session=True,  # its own process group, killed by PID below
            )
        os.close(child_r)
        os.close(child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    # -- protocol -------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_child, data)
            data = data[written:]

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """Next message, or None when the deadline passes first."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise CdpError(f"chromium closed the pipe; stderr in {self.stderr_path}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def pump(self, seconds: float) -> None:
        """Collect events for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while (message := self._receive(deadline)) is not None:
            if "method" in message:
                self.events.append(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply is None:
                raise CdpError(f"{method}: no reply within {timeout} s")
            if "method" in reply:
                self.events.append(reply)
            elif reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def new_page(self, width: int = 1400, height: int = 1000) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, target, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=3.0)
                except (CdpError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc.poll() is None:
                # The browser leads its own session: its group holds exactly its children.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.user_data_dir, ignore_errors=True)


class Page:
    """One tab: navigation, script evaluation, mouse input, screenshots, what it logged."""

    def __init__(self, browser: Chromium, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        return self.browser.call(method, params, self.session_id, timeout)

    def own_events(self, method: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.browser.events
            if e.get("sessionId") == self.session_id and (method is None or e["method"] == method)
        ]

    def goto(self, url: str, timeout: float = 20.0) -> None:
        seen = len(self.own_events("Page.loadEventFired"))
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        deadline = time.monotonic() + timeout
        while len(self.own_events("Page.loadEventFired")) <= seen:
            if time.monotonic() > deadline:
                raise CdpError(f"{url}: no load event within {timeout} s")
            self.browser.pump(0.05)

    def evaluate(self, expression: str, timeout: float = 15.0) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll until `expression` is truthy; its value, or CdpError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"{expression!r} still falsy after {timeout} s")
            self.browser.pump(0.05)

    def _mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def hover(self, x: float, y: float) -> None:
        self._mouse("mouseMoved", x, y)

    def click(self, x: float, y: float) -> None:
        self._mouse("mouseMoved", x, y)
        self._mouse("mousePressed", x, y, button="left", clickCount=1)
        self._mouse("mouseReleased", x, y, button="left", clickCount=1)

    def type_text(self, text: str) -> None:
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> Path:
        """Full-page PNG at the emulated width."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
            timeout=30.0,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    @property
    def console_errors(self) -> list[str]:
        errors: list[str] = []
        for e in self.own_events():
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                )
            elif e["method"] == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                errors.append(str(details.get("exception", {}).get("description") or details))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(str(p["entry"].get("text")))
        return errors

    @property
    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.own_events("Network.requestWillBeSent")]

    def close(self) -> None:
        try:
            self.browser.call("Target.closeTarget", {"targetId": self.target_id}, timeout=5.0)
        except CdpError:
            pass


@pytest.fixture
def chromium(_no_leaked_children: None) -> Iterator[Chromium]:
    """A fresh browser per test: Chromium starts helper processes lazily, and a browser
    shared across tests would trip the leak guard. Requesting `_no_leaked_children` makes
    its check run after this fixture has killed the browser."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "Chromium not found: install it (Debian: apt-get install chromium) "
            "or point ASGIPROF_CHROMIUM at it"
        )
    browser = Chromium(executable)
    try:
        browser.call("Browser.getVersion", timeout=30.0)  # ready when it answers
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(chromium: Chromium) -> Iterator[Page]:
    tab = chromium.new_page()
    try:
        yield tab
    finally:
        tab.close()
