"""Shared fixtures: tiny random CogVideoX pipelines (real diffusers classes) and synthetic videos."""
from __future__ import annotations

import json
import os

import pytest

from ditflow.config import RuntimeOptions
from ditflow.store import Store
from helpers import extract_cfg, moving_square



@pytest.fixture(scope="session")
def tiny_rope(tmp_path_factory):
    """A 5B-like tiny model (RoPE), two blocks."""
    from ditflow.tiny import build_tiny_pipeline

    return str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny-rope"), rope=True))


@pytest.fixture(scope="session")
def tiny_sincos(tmp_path_factory):
    """A 2B-like tiny model (3D sincos positional embedding), two blocks."""
    from ditflow.tiny import build_tiny_pipeline

    return str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sincos"), rope=False, seed=1))


@pytest.fixture(scope="session")
def tiny_ltx2(tmp_path_factory):
    from ditflow.tiny_ltx2 import build_tiny_ltx2_pipeline

    return str(build_tiny_ltx2_pipeline(tmp_path_factory.mktemp("tiny-ltx2")))


@pytest.fixture(scope="session")
def ref_video(tmp_path_factory):
    from ditflow.video import write_video

    return str(write_video(moving_square(), tmp_path_factory.mktemp("videos") / "ref.gif"))


@pytest.fixture(scope="session")
def picture(tmp_path_factory):
    """A yellow disc on blue, 40x60 (the tiny reference's 32x48 aspect): the image image-to-video runs animate."""
    import cv2
    import numpy as np

    img = np.zeros((40, 60, 3), np.uint8)
    img[..., 2] = 200
    cv2.circle(img, (20, 20), 9, (255, 230, 0), -1)
    path = tmp_path_factory.mktemp("img") / "disc.png"
    cv2.imwrite(str(path), img[..., ::-1])
    return str(path)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "cache")


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch):
    """No model weights anywhere: an empty HOME and Hugging Face cache, offline, and a cache of this test's own."""
    home = tmp_path / "home"
    for var, value in {"HOME": home, "HF_HOME": home / "hf", "HF_HUB_OFFLINE": "1", "DITFLOW_CACHE": tmp_path / "c"}.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


@pytest.fixture
def runtime():
    return RuntimeOptions(device="cpu", quiet=True)


@pytest.fixture(scope="session")
def amf_cache(tiny_rope, ref_video, tmp_path_factory):
    """A cache holding one AMF of the tiny model, shared by the tests that check a guide refuses bad input before it writes anything."""
    from ditflow.config import RuntimeOptions
    from ditflow.stages import extract

    cache = tmp_path_factory.mktemp("amf-cache")
    art = extract(ref_video, extract_cfg(tiny_rope), runtime=RuntimeOptions(device="cpu", quiet=True), store=Store(cache))
    return cache, art.hash


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if any model would load."""
    def refuse(*_, **__):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("ditflow.stages.load_backbone", refuse)


@pytest.fixture(autouse=True, scope="session")
def _digest_memo(tmp_path_factory):
    """The weights' digest memo of this run, not the user's."""
    from ditflow.backbones.digests import MEMO_ENV

    os.environ[MEMO_ENV] = str(tmp_path_factory.mktemp("digests") / "digests.json")


# -- eval: no weights anywhere, and a random-weight CLIP ------------------------------------------------
@pytest.fixture
def offline(tmp_path_factory, monkeypatch):
    """No weights anywhere: empty HF / torch / clip caches, offline hub, no CoTracker from the environment."""
    home = tmp_path_factory.mktemp("home")
    for var, value in {"HOME": home, "HF_HOME": home / "hf", "XDG_CACHE_HOME": home / "cache", "TORCH_HOME": home / "torch",
                       "HF_HUB_OFFLINE": "1", "DITFLOW_CACHE": home / "ditflow"}.items():
        monkeypatch.setenv(var, str(value))
    for var in ("HF_HUB_CACHE", "DITFLOW_COTRACKER_REPO", "DITFLOW_COTRACKER_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)


TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A 1-layer open_clip config registered under a test-only name (random weights, no download)."""
    import open_clip

    path = tmp_path_factory.mktemp("clipcfg") / "ditflow-test-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)
    return "ditflow-test-tiny-clip"
