"""Drive a headless Chromium through the DevTools protocol over a pipe (standard library).

Chromium started with ``--remote-debugging-pipe`` reads protocol messages (JSON, each
ending in a NUL byte) from file descriptor 3 and writes its answers and events to file
descriptor 4. :class:`HeadlessBrowser` opens one page target, records console errors
and uncaught exceptions, evaluates JavaScript and takes screenshots. No Playwright or
Selenium, no browser download: it uses the system ``chromium``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``SAMWSSS_CHROMIUM`` first), or ``None``."""
    explicit = os.environ.get("SAMWSSS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """The browser died, timed out or answered a command with an error."""


class HeadlessBrowser:
    """One headless Chromium with one page, driven over ``--remote-debugging-pipe``.

    Use as a context manager. ``errors`` collects console errors, uncaught exceptions and
    error log entries (e.g. a blocked resource) as text.
    """

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserError("no chromium found; install it (apt-get install chromium)")
        self.executable = found
        self.timeout = timeout
        self.errors: list[str] = []
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="samwsss-chromium-")
        to_child_read, to_child_write = os.pipe()
        from_child_read, from_child_write = os.pipe()

        def wire_fds() -> None:  # in the child: fd 3 = commands in, fd 4 = answers out
            import fcntl

            # copy both above 10 first: either pipe end may itself be fd 3 or 4
            high_read = fcntl.fcntl(to_child_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(from_child_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)  # inheritable: survives the exec
            os.dup2(high_write, 4)

        args = [
            self.executable,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--allow-file-access-from-files",
            f"--user-data-dir={self._profile.name}",
            "--window-size=1280,1000",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            args,
            # fds 3 and 4 are made in preexec_fn; close_fds would close them after it (the
            # parent's other descriptors are non-inheritable and close at exec anyway)
            close_fds=False,
            preexec_fn=wire_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_read)
        os.close(from_child_write)
        self._write = to_child_write
        self._read = from_child_read
        try:
            target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
            attached = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})
            self._session = attached["sessionId"]
            for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
                self.command(domain)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HeadlessBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser (this process only) and remove its profile."""
        for fd in (getattr(self, "_write", None), getattr(self, "_read", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._write = self._read = None  # type: ignore[assignment]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._profile.cleanup()

    def _receive(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"chromium did not answer within {self.timeout} s")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed the DevTools pipe (it crashed?)")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        loaded: dict[str, Any] = json.loads(message)
        self._note(loaded)
        return loaded

    def _note(self, message: dict[str, Any]) -> None:
        """Record errors from events; keep every event for :meth:`wait_event`."""
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            self.errors.append("console: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            described = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {described}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        if method is not None:
            self._events.append(message)

    def command(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one protocol command (to the page session once attached) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first recorded (or next) event named ``method``."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(index)
            self._receive(deadline)

    def open(self, path: Path) -> None:
        """Load a local file and wait for its ``load`` event."""
        self._events.clear()
        self.command("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (exceptions raise)."""
        result = self.command(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG screenshot of the page (full height up to 4000 px)."""
        height = int(self.evaluate("document.documentElement.scrollHeight") or 1000)
        self.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": False},
        )
        data = self.command("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
