"""What the browser tests share: Debian's chromium driven by Playwright, `ditflow ui` started in a subprocess on
a tiny model, and the steps' helpers (tabs, screenshots, video durations)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("DITFLOW_REQUIRE_BROWSER"):  # CI (.ci/run) runs them, never skips them
    raise RuntimeError("DITFLOW_REQUIRE_BROWSER is set but chromium is not on PATH (apt-get install chromium)")
MARKS = [pytest.mark.browser, pytest.mark.slow,
         pytest.mark.skipif(CHROMIUM is None, reason="browser tests: no chromium on PATH (apt-get install chromium)")]
TIMEOUT = 120_000  # ms: a guided run of the tiny model on 2 shared cores
TINY_DEFAULTS = {"frames": 9, "height": 32, "width": 48, "guidance_blocks": [1], "dtype": "float32", "steps": 4,
                 "guidance_range": [4, 2], "opt_steps": 2, "cfg": 6.0, "negative_prompt": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ui_server(base: Path, model: Path):
    """`ditflow ui --model MODEL` in a subprocess, in an empty folder as its cwd, with its own TMPDIR."""
    cwd, tmp = base / "cwd", base / "tmp"
    cwd.mkdir(), tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "DITFLOW_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "ditflow.cli.app", "ui", "--model", str(model), "--cache",
                             str(base / "cache"), "--port", str(port), "--device", "cpu"], cwd=cwd, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline, line = time.time() + 120, ""
    while time.time() < deadline and "ditflow ui:" not in line:
        line = proc.stderr.readline()
        if proc.poll() is not None:
            pytest.fail(f"ditflow ui exited: {line}{proc.stderr.read()}")
    yield {"url": f"http://127.0.0.1:{port}", "model": str(model), "cache": base / "cache", "cwd": cwd, "tmp": tmp,
           "proc": proc, "banner": line, "shots": base / "screenshots"}
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def browser_page(url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.set_default_timeout(TIMEOUT)
        pg.goto(url)
        yield pg
        browser.close()


def shot(server, page, name: str) -> Path:
    server["shots"].mkdir(exist_ok=True)
    path = server["shots"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def video_duration(page, selector: str) -> float:
    """The duration of the <video> in `selector` once its metadata has loaded (0 if it never does)."""
    video = page.locator(f"{selector} video")
    video.wait_for(state="attached")
    return page.evaluate("""el => new Promise(done => {
        if (el.readyState >= 1) return done(el.duration);
        el.addEventListener('loadedmetadata', () => done(el.duration)); setTimeout(() => done(0), 30000); })""",
                         video.element_handle())


def pick_first(page, label: str) -> None:
    page.get_by_label(label).click()
    page.get_by_role("option").first.click()
