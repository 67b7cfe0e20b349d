"""`ditflow ui` on an image-to-video model, without a browser: the page takes a picture (an upload, fitted by
--image-fit, previewed as the model sees it), its runs are the CLI's `guide --image` runs, and the family's
own settings are fields of the form."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ditflow.store import Store
from helpers import run_cli

pytest.importorskip("gradio", reason="the ui extra is not installed (pip install -e '.[ui]')")
QUICK = ["--steps", "2", "--guidance-range", "2,1", "--opt-steps", "1"]
TINY = {"frames": 9, "height": 32, "width": 48, "guidance_blocks": [1], "dtype": "float32", "steps": 4,
        "guidance_range": [4, 2], "opt_steps": 2, "cfg": 6.0, "negative_prompt": ""}


@pytest.fixture(scope="module")
def i2v(tmp_path_factory, ref_video):
    """A tiny CogVideoX image-to-video model with the tiny sizes as its defaults, its AMF, and a page runner."""
    from ditflow.config import ExtractConfig, RuntimeOptions
    from ditflow.stages import extract
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline
    from ditflow.ui.actions import Runner

    base = tmp_path_factory.mktemp("ui-i2v")
    folder = build_tiny_cogvideox_i2v_pipeline(base / "model")
    (folder / "ditflow.json").write_text(json.dumps(TINY))
    store = Store(base / "cache")
    amf = extract(ref_video, ExtractConfig(model=str(folder)), runtime=RuntimeOptions(device="cpu", quiet=True),
                  store=store)
    runner = Runner(store=store, model=str(folder), work=base / "work", device="cpu")
    runner.uploads.mkdir(parents=True)
    picture = np.zeros((40, 80, 3), np.uint8)
    picture[10:30, 10:30] = (255, 200, 0)
    from PIL import Image

    Image.fromarray(picture).save(runner.uploads / "disc.png")
    return {"runner": runner, "folder": str(folder), "amf": amf.hash, "image": str(runner.uploads / "disc.png")}


def test_the_page_has_a_picture_and_the_familys_settings(i2v):
    from ditflow.ui.page import build

    page = build(i2v["runner"])
    ids = {getattr(b, "elem_id", None) for b in page.blocks.values()}
    labels = {getattr(b, "label", None) for b in page.blocks.values()}
    assert {"dtf-image", "dtf-image-fit", "dtf-image-preview"} <= ids
    assert {"scheduler", "dynamic cfg"} <= labels  # CogVideoX's own settings, as `guide --help` lists them


def test_a_page_run_animates_the_picture_as_the_cli_does(i2v, capsys, monkeypatch):
    r = i2v["runner"]
    art = r.run("tab", lambda: r.guide(i2v["amf"], "a red circle", "backbone", [*QUICK, "--image-fit", "pad",
                                                                              "--no-dynamic-cfg"], i2v["image"]),
                lambda f, t: None)
    code, out, err = run_cli(["guide", "--amf", i2v["amf"], "--prompt", "a red circle", "--no-guidance", "--no-injection",
                              *QUICK, "--image", i2v["image"], "--image-fit", "pad", "--no-dynamic-cfg",
                              "--cache", str(r.store.root), "--device", "cpu"], capsys, monkeypatch)
    assert code == 0 and out.strip() == art.hash and "cache hit" in err
    assert art.image is not None and art.image[0, 0].tolist() == [0, 0, 0]  # padded: black bars above and below


def test_the_preview_is_the_picture_the_run_animates(i2v):
    from ditflow.artifacts import load

    r = i2v["runner"]
    art = load(r.store, next(h for h in r.store.hashes() if r.store.info(h).kind == "gen"), "gen")
    assert np.array_equal(r.preview(i2v["image"], "pad", i2v["amf"]), art.image)
    assert r.preview(i2v["image"], "crop", None).shape == (32, 48, 3)  # no AMF chosen: the model's size


def test_the_side_by_side_shows_the_picture(i2v):
    from ditflow.artifacts import load
    from ditflow.ui import media
    from ditflow.video import read_video

    r = i2v["runner"]
    gen = load(r.store, next(h for h in r.store.hashes() if r.store.info(h).kind == "gen"), "gen")
    amf = load(r.store, gen.inputs["amf"], "amf")
    path = media.compare_file([amf, gen.image, gen], ["reference", "image", "backbone"], r.work)
    frames = read_video(path)
    assert len(frames) == len(gen.frames) and frames.shape[2] > 2 * amf.frames.shape[2]


@pytest.mark.parametrize("fit", ["bogus", ""])
def test_a_bad_image_fit_is_the_cli_line(i2v, fit):
    from ditflow.errors import InputError

    r = i2v["runner"]
    with pytest.raises(InputError, match="--image-fit"):
        r.guide(i2v["amf"], "a red circle", "backbone", [*QUICK, "--image-fit", fit], i2v["image"])


def test_a_picture_not_uploaded_to_the_page_is_refused(i2v, tmp_path):
    from ditflow.errors import InputError

    outside = shutil.copy(i2v["image"], tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="the page reads only files uploaded to it"):
        i2v["runner"].guide(i2v["amf"], "a red circle", "backbone", QUICK, str(outside))


def test_without_a_picture_the_run_says_what_is_missing(i2v):
    from ditflow.errors import InputError

    with pytest.raises(InputError, match="image-to-video model .*give --image"):
        i2v["runner"].guide(i2v["amf"], "a red circle", "backbone", QUICK)
