"""Headless Chromium for the report tests: Debian's `chromium`, driven by playwright.

No browser is ever downloaded (`playwright install` is not used): the tests
launch /usr/bin/chromium, which `.ci/run` installs with apt. Without it (a
developer laptop) the tests skip and say why, except where they are
required: under CI (`CI` set) or `.ci/run` (`LOADKIT_REQUIRE_BROWSER=1`) a
missing browser fails them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported where used: without playwright the tests skip
    from playwright.sync_api import Browser, BrowserContext, Dialog, Page

CHROMIUM = os.environ.get("LOADKIT_CHROMIUM", "/usr/bin/chromium")  # another build, elsewhere
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent.parent / "browser" / "artifacts"


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (install Debian's `chromium`; .ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


# Module scope, not session: playwright's sync API keeps an event loop
# running in this thread while it is open, and the in-process runs of other
# test modules need to start their own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    why = _missing()
    if why:
        if os.environ.get("LOADKIT_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(f"the browser tests must run here (CI or LOADKIT_REQUIRE_BROWSER "
                        f"is set), but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Opened:
    page: Page
    errors: list[str] = field(default_factory=list)  # console errors, page errors
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


OpenReport = Callable[[Path], Opened]  # the open_report fixture


@pytest.fixture
def open_report(browser: Browser) -> Iterator[OpenReport]:
    """Open a local HTML file; record console errors, requests and dialogs."""
    contexts: list[BrowserContext] = []

    def go(path: Path) -> Opened:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        seen = Opened(page)
        page.on("console", lambda m: seen.errors.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
        page.on("request", lambda r: seen.requests.append(r.url))
        def dialog(d: Dialog) -> None:  # noted, then dismissed: a page must never raise one
            seen.dialogs.append(d.message)
            d.dismiss()
        page.on("dialog", dialog)
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(300)  # anything deferred would have happened by now
        return seen

    yield go
    for context in contexts:
        context.close()
