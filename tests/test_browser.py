"""The studio in a real browser: Voila serves the notebook, headless Debian
Chromium (through Playwright) moves a slider, presses Run, sees the preview
change, presses Stop and takes a screenshot.

Needs /usr/bin/chromium (Debian's `chromium` package; `.ci/run` installs it)
and the `playwright` and `voila` Python packages; skips, saying which is
missing, otherwise, except in CI (``CI`` set), where a missing one fails.
Voila runs with `make studio`'s settings (notebooks/voila.json), its idle
time shortened, so that the culling of a closed page's kernel is seen. Set NST_STUDIO_SCREENSHOT=PATH to keep the mid-run
screenshot (and NST_STUDIO_SIZE to change the image size, 96 by default).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import BLOCK13_WEIGHTS
from PIL import Image
from test_notebooks import with_parameters

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
STUDIO = Path(__file__).resolve().parents[1] / "notebooks" / "studio.ipynb"

VOILA_CONFIG = STUDIO.parent  # voila.json, as `make studio` uses it


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return "no /usr/bin/chromium: install Debian's chromium package (see docs/architecture.md, Tests)"
    for module in ("playwright.sync_api", "voila"):
        try:
            __import__(module)
        except ImportError:
            return f"the {module.split('.')[0]} package is not installed"
    return None


if _missing():
    if os.environ.get("CI"):  # CI installs all of it: a gap there is a failure, not a skip
        pytest.fail(f"{_missing()} (in CI the browser test must run)", pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)
from playwright import sync_api  # noqa: E402  (present: checked above)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    """Voila serving the studio notebook with tiny settings; yields its URL."""
    folder = tmp_path_factory.mktemp("voila")
    weights = str(BLOCK13_WEIGHTS) if BLOCK13_WEIGHTS.is_file() else "random"
    size = int(os.environ.get("NST_STUDIO_SIZE", "96"))
    notebook = with_parameters(
        nbformat.read(STUDIO, as_version=4), {"SIZE": size, "STEPS": 400, "WEIGHTS": weights, "PRESET": "blocks1-3"}
    )
    nbformat.write(notebook, folder / "studio.ipynb")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(folder / "voila.log", "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                "studio.ipynb",
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--VoilaConfiguration.show_tracebacks=True",
                f"--Voila.config_file_paths={VOILA_CONFIG}",
                f"--MappingKernelManager.cull_idle_timeout={IDLE_S}",
                "--MappingKernelManager.cull_interval=1",
            ],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 240  # a loaded machine starts Jupyter's server slowly
            while True:
                try:
                    urllib.request.urlopen(url + "api", timeout=5)
                    break
                except urllib.error.HTTPError:  # an answer, even a refusal: the server is up
                    break
                except OSError:
                    assert time.time() < deadline and server.poll() is None, (folder / "voila.log").read_text()
                    time.sleep(0.5)
            yield url, folder, server
        finally:
            server.terminate()
            server.wait(20)


#: Idle seconds before Voila culls a kernel with no page: shortened from
#: voila.json's 600. A kernel with its page open is never culled, however
#: idle (cull_connected false): the browser test below idles longer than this.
IDLE_S = 5


def kernels(server: subprocess.Popen) -> list[int]:
    """The process ids of the server's kernels (its ipykernel children)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) == server.pid
                and b"ipykernel" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except (ValueError, OSError):  # not a process, or one that has just ended
            continue
    return found


def image_of(page, selector: str) -> np.ndarray:
    """What the browser shows of ``selector``, as RGB values."""
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"), dtype=float)


def step_shown(page) -> int:
    """The step the preview's status line shows (-1 before any)."""
    found = re.match(r"step (\d+) of", page.inner_text(".nst-status"))
    return int(found.group(1)) if found else -1


def wait_until(condition, limit: float = 240.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.1)


def seconds_to_first_frame(page, button: str) -> float:
    """Click ``button`` and wait for the output image to change: what the
    person who clicked waits for."""
    before = page.get_attribute("img.nst-current", "src")
    clicked = time.monotonic()
    page.click(button)
    page.wait_for_function(
        "(b) => { const i = document.querySelector('img.nst-current'); return i && i.src !== b; }",
        arg=before,
        timeout=240_000,
    )
    return time.monotonic() - clicked


def wait_stopped(page) -> None:
    # Each widget's state reaches the page on its own: wait for the buttons
    # themselves rather than read them when the message comes.
    page.wait_for_function(
        "() => document.querySelector('.nst-message').innerText.includes('stopped')"
        " && !document.querySelector('.nst-run').disabled"
        " && !document.querySelector('.nst-continue').disabled"
        " && !document.querySelector('.nst-save').disabled",
        timeout=120_000,
    )


def test_studio_in_a_browser(voila, tmp_path):
    """Run; steer alpha/beta mid-run (the step count goes on, the plot marks
    it); Stop; Run again (warm) and Continue. Prints the seconds from each
    click to the first new frame."""
    url, folder, _ = voila
    keep = os.environ.get("NST_STUDIO_SCREENSHOT")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, env={**os.environ, "HOME": str(tmp_path)}
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1300})
            page.goto(url, timeout=60_000)
            # Voila runs the notebook first (TensorFlow import, samples): wait for the UI.
            page.wait_for_selector(".nst-run", timeout=180_000)
            handle = page.locator(".nst-ratio .noUi-handle")

            cold = seconds_to_first_frame(page, ".nst-run")
            wait_until(lambda: step_shown(page) >= 5)
            before = step_shown(page)
            handle.focus()
            for _ in range(4):
                handle.press("ArrowLeft")  # alpha/beta down four notches, mid-run: more style
            steered = image_of(page, "img.nst-current")
            page.wait_for_selector("text=settings changed at step", timeout=120_000)
            changed = int(re.search(r"changed at step (\d+)", page.inner_text(".nst-status")).group(1))
            assert changed >= before  # the same run went on: no restart from step 0
            wait_until(lambda: step_shown(page) >= changed + 12)  # past the plot's next refresh
            time.sleep(IDLE_S + 2)  # longer than a page-less kernel may idle: this one has its page
            assert np.abs(image_of(page, "img.nst-current") - steered).mean() > 1  # the image went on changing
            plot = image_of(page, "img.nst-plot")
            marker = (np.abs(plot - 89).max(-1) < 30).sum(0)  # the dashed line is grey 0.35 (89/255)
            assert marker.max() > 0.25 * plot.shape[0], "no dashed line in the loss plot"
            if keep:
                wait_until(lambda: step_shown(page) >= changed + 60)
            page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)

            page.click(".nst-stop")
            wait_stopped(page)
            warm = seconds_to_first_frame(page, ".nst-run")
            wait_until(lambda: step_shown(page) >= 3)
            page.click(".nst-stop")
            wait_stopped(page)
            reached = step_shown(page)
            page.click(".nst-continue")
            wait_until(lambda: step_shown(page) > reached + 2)  # on from where it was
            page.click(".nst-stop")
            wait_stopped(page)
            print(f"click to first frame: cold Run {cold:.2f} s, warm Run {warm:.2f} s")
        finally:
            browser.close()
    assert (tmp_path / "studio.png").stat().st_size > 10_000
    if keep:
        shutil.copy(tmp_path / "studio.png", keep)


def test_a_closed_page_and_a_page_nobody_opened_free_their_kernels(voila, tmp_path):
    """`make studio`'s culling: a kernel started by a plain HTTP request (no
    page ever connects) and one whose page was closed both end."""
    url, _, server = voila
    wait_until(lambda: not kernels(server), limit=120)  # earlier tests' closed pages
    urllib.request.urlopen(url, timeout=240).read()  # Voila runs the notebook in a new kernel
    assert len(kernels(server)) == 1
    wait_until(lambda: not kernels(server), limit=120)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, env={**os.environ, "HOME": str(tmp_path)}
        )
        try:
            page = browser.new_page()
            page.goto(url, timeout=60_000)
            page.wait_for_selector(".nst-run", timeout=180_000)
            time.sleep(IDLE_S + 3)  # idle, but its page is open: kept
            assert len(kernels(server)) == 1
            page.close()
        finally:
            browser.close()
    wait_until(lambda: not kernels(server), limit=120)
