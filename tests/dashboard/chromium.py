"""Pages in real headless Chromium (Debian's ``chromium``, driven by Playwright): a page that fails its test on
any script error, and a screenshot of it for a person to look at."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Dialog, Page, ViewportSize

CHROMIUM = "/usr/bin/chromium"
WIDE = ViewportSize(width=1280, height=860)
NARROW = ViewportSize(width=390, height=844)
#: a browser test waits at most this long for what it expects to see (failures only)
SEE_MS = 10_000


async def open_page(browser: Browser, viewport: ViewportSize = WIDE) -> Page:
    page = await browser.new_page(viewport=viewport)
    page.set_default_timeout(SEE_MS)
    errors: list[str] = []
    # a script or style the CSP refused, or any error in ours, fails the test (pages answering 404 or 422 on
    # purpose are logged as failed loads: those are not errors of the page)
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def shot(page: Page, artifacts: Path, name: str, *, whole: bool = True) -> None:
    """The whole page, or (``whole=False``, for long lists) what a person sees first."""
    await page.screenshot(path=artifacts / f"{name}.png", full_page=whole)
