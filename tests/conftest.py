"""Shared fixtures: tiny random CogVideoX pipelines (real diffusers classes) and synthetic videos."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from ditflow.config import ExtractConfig, RuntimeOptions
from ditflow.store import Store

FRAMES, HEIGHT, WIDTH = 9, 32, 48


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


def moving_square(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH, step: int = 3) -> np.ndarray:
    """A white square moving right over a textured background: uint8 [T, H, W, 3]."""
    rng = np.random.default_rng(0)
    bg = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    out = np.repeat(bg[None], frames, axis=0)
    for t in range(frames):
        x = 2 + t * step
        out[t, 10:22, x : x + 12] = 255
    return out


@pytest.fixture(scope="session")
def ref_video(tmp_path_factory):
    from ditflow.video import write_video

    return str(write_video(moving_square(), tmp_path_factory.mktemp("videos") / "ref.gif"))


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "cache")


@pytest.fixture
def runtime():
    return RuntimeOptions(device="cpu", quiet=True)


def extract_cfg(model: str, **kw) -> ExtractConfig:
    return ExtractConfig(model=model, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,), **kw)


def decreases_within_each_step(losses, opt_steps: int) -> bool:
    """Within every guidance step the loss after optimising is below the first evaluation."""
    by_step = {}
    for r in losses:
        by_step.setdefault(r["step"], []).append(r["loss"])
    assert by_step and all(len(v) == opt_steps for v in by_step.values())
    return all(v[-1] < v[0] for v in by_step.values())


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run the real entry point (error mapping included) in-process: (exit code, stdout, stderr)."""
    from ditflow.cli.app import main

    monkeypatch.setattr(sys, "argv", ["ditflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


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
