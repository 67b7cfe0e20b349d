"""`ditflow ui` on an image-to-video model, in headless Chromium: extract a reference, upload the picture to
animate, see it as the model will, pick --image-fit and the family's settings, generate, and find the picture in
the side-by-side; the run is the CLI's `guide --image` run."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from browser_kit import MARKS, TINY_DEFAULTS, browser_page, shot, tab, ui_server, video_duration
from helpers import moving_square

pytestmark = MARKS
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests: playwright not installed (pip install -e '.[test]')")
pytest.importorskip("gradio", reason="browser tests: the ui extra is not installed (pip install -e '.[ui]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ditflow ui` on a tiny random CogVideoX image-to-video model (its ditflow.json: the tiny sizes)."""
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline

    base = tmp_path_factory.mktemp("ui-i2v")
    model = build_tiny_cogvideox_i2v_pipeline(base / "tiny-i2v")
    (model / "ditflow.json").write_text(json.dumps(TINY_DEFAULTS))
    with ui_server(base, model) as s:
        yield s


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server["url"]) as pg:
        yield pg


def test_1_extract_the_reference(server, page, tmp_path_factory):
    from ditflow.video import write_video

    video = write_video(moving_square(), tmp_path_factory.mktemp("ref") / "ref.gif")
    page.locator("input[type=file]").first.set_input_files(str(video))
    page.locator("#dtf-extract").click()
    page.locator("#dtf-amf-hash").get_by_text("AMF").wait_for()


def test_2_the_picture_is_previewed_as_the_model_sees_it(server, page, tmp_path_factory):
    from PIL import Image

    picture = np.zeros((40, 80, 3), np.uint8)
    picture[10:30, 30:50] = (255, 200, 0)
    path = tmp_path_factory.mktemp("img") / "disc.png"
    Image.fromarray(picture).save(path)
    server["image"] = path
    tab(page, "2 · Generate")
    page.locator("#dtf-image input[type=file]").set_input_files(str(path))
    preview = page.locator("#dtf-image-preview img")
    preview.wait_for()
    # cropped (the default) to the reference's 32x48: the model's size, not the picture's 40x80
    assert preview.evaluate("el => [el.naturalWidth, el.naturalHeight]") == [48, 32]
    shot(server, page, "1-picture")


def test_3_generate_shows_the_picture_beside_the_runs(server, page):
    page.locator("#dtf-prompt textarea").fill("a red circle on a grey background")
    # one run, unscored: the T2V browser test covers the backbone beside it and the scores
    page.get_by_label("also run the backbone alone (same prompt and seed), to compare").uncheck()
    page.get_by_label("score: motion fidelity and CLIP score (when their weights are present)").uncheck()
    page.get_by_label("image fit").click()
    page.get_by_role("option", name="pad").click()
    page.get_by_text("model settings").click()
    page.get_by_label("dynamic cfg").click()
    page.get_by_role("option", name="on", exact=True).click()
    # every dropdown closed and the padded preview drawn before Generate: a click landing while a list is open
    # only closes it (a run that never starts)
    page.get_by_role("listbox").wait_for(state="hidden")
    page.locator("#dtf-image-preview img").wait_for()
    page.locator("#dtf-generate").click()
    page.locator("#dtf-gen-hash").get_by_text("gen").wait_for()
    assert video_duration(page, "#dtf-compare") > 0
    assert "error:" not in page.locator("body").inner_text()
    shot(server, page, "2-generate")
    gen = next(w.strip("`") for w in page.locator("#dtf-gen-hash").inner_text().split() if len(w.strip("`")) == 64)
    # the CLI's run of the same settings (the page's default setup: DiTFlow, emb mode) is a cache hit
    amf = next(h.hash for h in _scan(server) if h.info.kind == "amf")
    out = subprocess.run([sys.executable, "-m", "ditflow.cli.app", "guide", "--amf", amf, "--prompt",
                          "a red circle on a grey background", "--opt-mode", "emb", "--image", str(server["image"]),
                          "--image-fit", "pad", "--dynamic-cfg", "--cache", str(server["cache"]), "--device", "cpu"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == gen and "cache hit" in out.stderr, out.stderr


def _scan(server):
    from ditflow.store import Store

    return list(Store(server["cache"]).scan())
