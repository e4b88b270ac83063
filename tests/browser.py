"""A real headless browser for the page tests: Debian's chromium driven by its chromedriver.

Tests that need it take the `browser` fixture (tests/conftest.py), which skips, saying why,
only when chromium, chromedriver or selenium is truly absent (the README's test command
installs chromium and chromium-driver, so CI has them).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)

# As the machine's own probe starts it: no sandbox as root, no background network (the
# machine has none, and a page must not need any).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not any(shutil.which(name) for name in DRIVER):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


def start(profile: Path) -> Any:
    """A headless Chromium session with browser console logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM if shutil.which(n))
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = next(shutil.which(n) for n in DRIVER if shutil.which(n))
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def open_page(driver: Any, path: Path) -> list[dict[str, Any]]:
    """Load a page from disk, wait until its script ran; return the console entries so far."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return driver.get_log("browser")


def console_errors(entries: list[dict[str, Any]]) -> list[str]:
    """Console lines at SEVERE level (script errors, blocked loads, failed resources)."""
    return [e.get("message", "") for e in entries if e.get("level") == "SEVERE"]


def screenshot_is_blank(png: bytes) -> bool:
    """True when a screenshot is one flat colour (nothing rendered)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(pixels.std()) < 2.0
