"""`ditflow ui` as a person uses it, in a real headless Chromium (Debian's `chromium`, driven by Playwright's
Python API with `executable_path`: its auto-waiting suits a page that updates itself, and it needs no driver
binary matched to the browser). One server (`ditflow ui` in a subprocess, on a tiny random model) and one
browser for the module; the steps run in order, each leaving a screenshot under the test's temporary folder."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from browser_kit import MARKS, TINY_DEFAULTS, browser_page, pick_first, shot, tab, ui_server, video_duration
from helpers import moving_square

pytestmark = MARKS
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests: playwright not installed (pip install -e '.[test]')")
pytest.importorskip("gradio", reason="browser tests: the ui extra is not installed (pip install -e '.[ui]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ditflow ui` on a tiny random model (its ditflow.json: the tiny sizes)."""
    from ditflow.tiny import build_tiny_pipeline

    base = tmp_path_factory.mktemp("ui")
    model = build_tiny_pipeline(base / "tiny", rope=True)
    (model / "ditflow.json").write_text(json.dumps(TINY_DEFAULTS))
    with ui_server(base, model) as s:
        yield s


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server["url"]) as pg:
        yield pg


def test_safe_banner(server):
    assert "127.0.0.1" in server["banner"] and "password" not in server["banner"]


def test_1_extract(server, page, tmp_path_factory):
    from ditflow.video import write_video

    video = write_video(moving_square(), tmp_path_factory.mktemp("ref") / "ref.gif")
    shot(server, page, "0-start")
    page.locator("input[type=file]").first.set_input_files(str(video))
    page.locator("#dtf-extract").click()
    page.locator("#dtf-amf-hash").get_by_text("AMF").wait_for()
    page.locator("#dtf-amf-anim img").wait_for()
    shot(server, page, "1-reference")
    text = page.locator("#dtf-amf-hash").inner_text()
    server["amf"] = next(w for w in text.split() if len(w) == 64)
    # the CLI's extract of the same file and settings is a cache hit: the page made the CLI's artifact
    out = subprocess.run([sys.executable, "-m", "ditflow.cli.app", "extract", str(video), "--model", server["model"],
                          "--cache", str(server["cache"]), "--quiet"], capture_output=True, text=True)
    assert out.stdout.strip() == server["amf"], out.stderr


def test_2_bad_value_gets_the_cli_message(server, page):
    tab(page, "2 · Generate")
    page.locator("#dtf-prompt textarea").fill("a red circle on a grey background")
    page.get_by_text("model settings").click()
    steps = page.get_by_label("denoising steps")
    steps.fill("0")
    page.locator("#dtf-generate").click()
    error = page.get_by_text("error: --steps must be >= 1")
    error.wait_for()
    # next to its field: the error slot sits right under the steps box
    assert 0 <= error.bounding_box()["y"] - steps.bounding_box()["y"] < 200
    shot(server, page, "2-bad-value")
    steps.fill("")


def test_3_guide(server, page):
    page.locator("#dtf-generate").click()
    page.locator("#dtf-gen-hash").get_by_text("gen").wait_for()
    assert video_duration(page, "#dtf-compare") > 0
    assert video_duration(page, "#dtf-result") > 0
    page.locator("#dtf-loss img").wait_for()
    shot(server, page, "3-generate")
    assert "error:" not in page.locator("body").inner_text()


def test_4_inject(server, page):
    tab(page, "3 · Reuse")
    pick_first(page, "emb-mode run")
    page.locator("#dtf-inject-prompt textarea").fill("a blue square on a white background")
    page.locator("#dtf-inject").click()
    page.locator("#dtf-inject-hash").get_by_text("gen").wait_for()
    assert video_duration(page, "#dtf-inject-video") > 0
    shot(server, page, "4-reuse")
    server["injected"] = next(w.strip("`") for w in page.locator("#dtf-inject-hash").inner_text().split() if len(w.strip("`")) == 64)


def test_5_cache_delete(server, page):
    from ditflow.store import Store

    tab(page, "4 · Cache")
    page.locator("#dtf-cache-table img").first.wait_for()
    imgs = page.locator("#dtf-cache-table img")
    assert imgs.count() >= 4 and all(imgs.nth(i).evaluate("el => el.naturalWidth > 0") for i in range(imgs.count()))
    # a referenced artifact (the AMF) is refused with the store's message; the leaf (the injected run) goes
    page.get_by_label("artifact").click()
    page.get_by_role("option", name=server["amf"][:12]).click()
    page.locator("#dtf-delete").click()
    page.locator("#dtf-confirm-delete").click()
    page.get_by_text("is referenced by another artifact; pass --force").wait_for()
    page.get_by_label("artifact").click()
    page.get_by_role("option", name=server["injected"][:12]).click()
    page.locator("#dtf-delete").click()
    shot(server, page, "5-cache-confirm")
    page.locator("#dtf-confirm-delete").click()
    page.locator("#dtf-cache-status").get_by_text("deleted").wait_for()
    shot(server, page, "5-cache-deleted")
    assert not Store(server["cache"]).exists(server["injected"]) and Store(server["cache"]).exists(server["amf"])


def test_6_report(server, page, tmp_path_factory):
    from ditflow.batch.results import write_json
    from ditflow.store import Store

    gens = [r for r in Store(server["cache"]).scan() if r.info.kind == "gen"]
    rows = [{"video": "ref.gif", "prompt": "a red circle", "setup": s, "seed": 1, "amf": server["amf"], "gen": g.hash,
             "motion_fidelity": mf, "seconds": sec, "status": "ok", "model": "tiny", "row": i, "cache": str(server["cache"])}
            for i, (g, s, mf, sec) in enumerate(zip(gens, ("ditflow-emb", "backbone"), (0.6, 0.3), (30.0, 12.0)))]
    results = write_json(rows, tmp_path_factory.mktemp("batch") / "results.json")
    tab(page, "5 · Batch report")
    page.locator("input[type=file]").last.set_input_files(str(results))
    frame = page.frame_locator("#dtf-report-frame")
    svg = frame.locator("svg")  # MF per setup, and MF against seconds per video
    svg.last.wait_for()
    assert svg.count() == 2 and frame.locator("svg[aria-label='MF against seconds per video']").count() == 1
    assert all(svg.nth(i).bounding_box()["width"] > 0 and svg.nth(i).bounding_box()["height"] > 0 for i in range(2))
    imgs = frame.locator(".strip img")
    assert imgs.count() == len(rows)
    for i in range(imgs.count()):
        assert imgs.nth(i).evaluate("el => el.complete && el.naturalWidth > 0 && el.getBoundingClientRect().width > 0")
    shot(server, page, "6-report")


def test_7_stop_removes_work_folder(server):
    """`kill` stops the server and removes its temporary folder; nothing was written to its cwd."""
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert list(server["tmp"].iterdir()) == [] and list(server["cwd"].iterdir()) == []
