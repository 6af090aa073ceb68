"""A headless Chromium page for the tests and benchmarks: Playwright on the system browser.

Playwright for Python carries its driver but no browser, and nothing here downloads one:
:func:`find_chromium` finds the system Chromium (``SAMWSSS_CHROMIUM`` first) and Playwright
launches it with ``executable_path``, with the flags that keep it off the network. Use
:func:`missing` to skip a test where playwright or Chromium is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Error, FloatRect

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

#: Headless, no sandbox (containers), no GPU, and no background traffic to Google services.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

WIDTH, HEIGHT = 1280, 1000


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


def missing() -> str | None:
    """Why no headless browser can run here (a skip reason), or ``None`` when one can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "no chromium installed (apt-get install chromium)"
    return None


class HeadlessBrowser:
    """One headless Chromium with one page, driven by Playwright.

    Use as a context manager. ``errors`` collects console errors (including resources that
    failed to load) and uncaught exceptions as text.
    """

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        from playwright.sync_api import sync_playwright  # optional: see missing()

        found = executable or find_chromium()
        if found is None:
            raise RuntimeError("no chromium found; install it (apt-get install chromium)")
        self.errors: list[str] = []
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=found, args=list(CHROMIUM_ARGS), timeout=timeout * 1000
            )
            self.page = self._browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        except BaseException:
            self._playwright.stop()
            raise
        self.page.set_default_timeout(timeout * 1000)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)

    def __enter__(self) -> HeadlessBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser and its Playwright driver."""
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(f"console: {message.text} {message.location.get('url', '')}".strip())

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"exception: {error.stack or error.message}")

    def open(self, path: Path) -> None:
        """Load a local file and wait for its ``load`` event."""
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        return self.page.evaluate(expression)

    def screenshot(self, path: Path) -> Path:
        """Save a PNG screenshot of the page (full height up to 4000 px)."""
        height = int(self.evaluate("document.documentElement.scrollHeight") or HEIGHT)
        clip: FloatRect = {"x": 0, "y": 0, "width": WIDTH, "height": min(height, 4000)}
        self.page.screenshot(path=path, full_page=True, clip=clip)
        return path
