"""Headless Chromium (Debian's, driven through its chromedriver) for the dashboard tests: pages open from
``file://`` as a user's would, and every message the page logs to the console is kept."""

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, DRIVER = "chromium", "chromedriver"


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    browser, driver = shutil.which(CHROMIUM), shutil.which(DRIVER)
    if not (browser and driver):  # never a skip: `make test` installs them
        raise RuntimeError("the dashboard tests need Debian's chromium and chromium-driver: run `make servers`")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):  # no file-access flag: the pages must work without it
        options.add_argument(arg)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def open_page(session: webdriver.Chrome, path: Path, fragment: str = "") -> list[dict]:
    """Open ``path`` from file:// (``get`` returns once the page has loaded and its scripts ran); returns the
    console's errors and warnings."""
    session.get(path.resolve().as_uri() + fragment)
    return [m for m in session.get_log("browser") if m["level"] in ("SEVERE", "WARNING")]


def screenshot_spread(session: webdriver.Chrome) -> int:
    """How many distinct colours the viewport's screenshot holds: a blank page has one."""
    from PIL import Image

    image = Image.open(io.BytesIO(session.get_screenshot_as_png())).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])
