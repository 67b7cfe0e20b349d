"""Fast mode: --fast's settings, gradient reuse, the local AMF in the guide, and gradient checkpointing's default."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import decreases_within_each_step, extract_cfg, run_cli
from ditflow import guides
from ditflow.backbones.preset import ModelPreset, with_folder_defaults
from ditflow.config import FAST_DEFAULTS, GuideConfig
from ditflow.errors import InputError
from ditflow.stages import extract, guide
from ditflow.store import Store

RUN = dict(prompt="a red circle", steps=4, guidance_range=(4, 2), opt_steps=4, lr=(0.2, 0.2))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("fast-cache"))


@pytest.fixture(scope="module")
def amf(tiny_rope, ref_video, store):
    from ditflow.config import RuntimeOptions

    return extract(ref_video, extract_cfg(tiny_rope), runtime=RuntimeOptions(device="cpu", quiet=True), store=store)


def test_fast_takes_the_models_settings_and_flags_win():
    preset = ModelPreset("x", fast={"amf_window": 3, "amf_frame_distance": 2, "grad_reuse": 4})
    fast = GuideConfig(prompt="p", fast=True).resolve(preset)
    assert (fast.amf_window, fast.amf_frame_distance, fast.grad_reuse) == (3, 2, 4)
    mixed = GuideConfig(prompt="p", fast=True, grad_reuse=2).resolve(preset)
    assert (mixed.amf_window, mixed.grad_reuse) == (3, 2)
    full = GuideConfig(prompt="p").resolve(preset)
    assert (full.amf_window, full.amf_frame_distance, full.grad_reuse) == (None, None, 1)


def test_a_folders_fast_table_is_read_and_checked():
    preset = with_folder_defaults(ModelPreset("x"), {"fast": {"grad_reuse": 2}}, "m")
    assert preset.fast == {**FAST_DEFAULTS, "grad_reuse": 2}
    with pytest.raises(InputError, match="fast takes"):
        with_folder_defaults(ModelPreset("x"), {"fast": {"speed": 9}}, "m")


def test_gradient_reuse_runs_one_forward_per_k_adam_steps(amf, store, runtime, monkeypatch):
    calls = []
    original = guides.Guide.loss
    monkeypatch.setattr(guides.Guide, "loss", lambda self, *a: calls.append(1) or original(self, *a))
    gen = guide(amf.hash, GuideConfig(**RUN, grad_reuse=2), runtime=runtime, store=store)
    assert len(calls) == 2 * 2  # 2 guidance steps x opt steps 0 and 2
    assert [r["fresh"] for r in gen.losses[:4]] == [True, False, True, False]
    assert gen.losses[1]["loss"] == gen.losses[0]["loss"]  # a reused step reports the last measured loss


def test_a_window_covering_the_frame_is_the_full_amf(amf, store, runtime):
    full = guide(amf.hash, GuideConfig(**RUN), runtime=runtime, store=store)
    covering = guide(amf.hash, GuideConfig(**RUN, amf_window=5, amf_frame_distance=2), runtime=runtime, store=store)
    assert covering.hash != full.hash
    assert np.array_equal(covering.frames, full.frames)


@pytest.mark.parametrize("window", [dict(amf_window=1), dict(amf_frame_distance=1)])
def test_the_local_amf_loss_falls_within_each_step(amf, store, runtime, window):
    gen = guide(amf.hash, GuideConfig(**RUN, **window), runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, RUN["opt_steps"])


def test_cli_fast_records_the_settings_it_used(amf_cache, capsys, monkeypatch):
    cache, h = amf_cache
    code, out, err = run_cli(["guide", "--amf", h, "--prompt", "a red circle", "--steps", "4", "--guidance-range", "4,2",
                              "--opt-steps", "3", "--fast", "--grad-reuse", "2", "--cache", str(cache), "-q", "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    meta = json.loads((Path(json.loads(out)["path"]) / "meta.json").read_text())
    inputs = meta["inputs"]
    assert (inputs["fast"], inputs["amf_window"], inputs["amf_frame_distance"], inputs["grad_reuse"]) == (True, 10, 4, 2)
    assert set(meta["seconds"]) == {"total", "load", "sample", "decode", "guidance_steps"} and len(meta["seconds"]["guidance_steps"]) == 2


def test_the_text_encoder_leaves_the_accelerator_after_encoding_and_comes_back(tiny_rope, runtime, monkeypatch):
    import torch

    from ditflow.backbones import load_backbone

    backbone = load_backbone(tiny_rope, "float32", runtime)
    assert backbone.release_text_encoder() is False  # on the CPU there is nothing to free
    moves = []
    monkeypatch.setattr(backbone.pipe.text_encoder, "to", lambda device: moves.append(str(device)))
    backbone.device = torch.device("cuda")  # what a GPU run holds (nothing is moved for real: `to` is recorded)
    assert backbone.release_text_encoder() is True
    backbone._text_encoder_ready()
    backbone._text_encoder_ready()  # already back: no second move
    assert moves == ["cpu", "cuda"]
    backbone.offloaded = True  # diffusers' offload moves it itself
    assert backbone.release_text_encoder() is False
