"""CogVideoX 1.5 (temporal patches of 2 latent frames) through the CogVideoX adapter, on a tiny random 1.5
pipeline (real diffusers classes). 9 frames encode to 3 latent frames, padded to 4 (2 token frames); 13
frames to 4, no padding."""
import json

import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, decreases_within_each_step, extract_cfg, moving_square, run_cli
from ditflow.backbones.base import geometry_of
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)
RUNTIME = RuntimeOptions(device="cpu", quiet=True)
UNGUIDED = dict(prompt="a red circle", negative_prompt="bad quality", guidance=False, injection=False, steps=4,
                cfg=6.0, seed=3, family={"scheduler": "dpm", "dynamic_cfg": True})


@pytest.fixture(scope="session")
def tiny15(tmp_path_factory):
    from ditflow.tiny import build_tiny_cogvideox15_pipeline

    return str(build_tiny_cogvideox15_pipeline(tmp_path_factory.mktemp("tiny-cogvideox15")))


@pytest.fixture(scope="module")
def store15(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("cogvideox15-cache"))


@pytest.fixture(scope="module")
def amf15(tiny15, ref_video, store15):
    return extract(ref_video, extract_cfg(tiny15, moft_fraction=0.25), runtime=RUNTIME, store=store15)


@pytest.fixture(scope="module")
def even_video(tmp_path_factory):
    from ditflow.video import write_video

    return str(write_video(moving_square(frames=13, step=2), tmp_path_factory.mktemp("even") / "ref13.gif"))


def _pipeline_frames(folder: str, frames: int) -> np.ndarray:
    """What CogVideoXPipeline.from_pretrained(folder) makes with UNGUIDED's settings, as uint8."""
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(folder)
    out = pipe(UNGUIDED["prompt"], negative_prompt=UNGUIDED["negative_prompt"], height=HEIGHT, width=WIDTH,
               num_frames=frames, num_inference_steps=4, guidance_scale=6.0, use_dynamic_cfg=True,
               generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=16).frames[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_geometry_pads_latent_frames_to_the_temporal_patch():
    odd = geometry_of(2, 8, 4, 9, 32, 48, patch_t=2)  # 3 latent frames + 1 in front
    assert (odd.latent_frames, odd.pad_frames, odd.grid) == (4, 1, (2, 2, 3))
    even = geometry_of(2, 8, 4, 13, 32, 48, patch_t=2)
    assert (even.latent_frames, even.pad_frames, even.grid) == (4, 0, (2, 2, 3))
    card = geometry_of(2, 8, 4, 81, 768, 1360, patch_t=2)  # the model card's size: 21 latent frames + 1
    assert (card.latent_frames, card.pad_frames, card.grid) == (22, 1, (11, 48, 85))
    assert geometry_of(2, 8, 4, 9, 32, 48).grid == (3, 2, 3)  # CogVideoX 1.0: a token per latent frame


def test_config_geometry_is_the_loaded_models(tiny15):
    from ditflow.backbones import load_backbone, resolve_model

    assert resolve_model(tiny15).geometry(FRAMES, HEIGHT, WIDTH) == \
        load_backbone(tiny15, "float32", RUNTIME).geometry(FRAMES, HEIGHT, WIDTH)


@pytest.mark.parametrize("frames", [FRAMES, 13], ids=["padded", "even"])
def test_unguided_run_is_the_pipeline(tiny15, ref_video, even_video, store15, frames):
    video = ref_video if frames == FRAMES else even_video
    amf = extract(video, ExtractConfig(model=tiny15, frames=frames, height=HEIGHT, width=WIDTH, blocks=(1,)),
                  runtime=RUNTIME, store=store15)
    gen = guide(amf.hash, GuideConfig(**UNGUIDED), runtime=RUNTIME, store=store15)
    ref = _pipeline_frames(tiny15, frames)
    assert gen.frames.shape == ref.shape and gen.frames.shape[1:] == (HEIGHT, WIDTH, 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


def test_rope_tables_are_the_pipelines_slice_grid(tiny15):
    from diffusers import CogVideoXPipeline

    from ditflow.backbones.cogvideox_attn import rope_tables

    pipe = CogVideoXPipeline.from_pretrained(tiny15)
    geo = geometry_of(2, 8, 4, FRAMES, HEIGHT, WIDTH, patch_t=2)
    ours = rope_tables(pipe.transformer.config, geo.grid)
    theirs = pipe._prepare_rotary_positional_embeddings(HEIGHT, WIDTH, geo.latent_frames, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and ours[0].shape == (2 * 2 * 3, 16)


def test_extract_gives_the_amf_on_the_token_grid(amf15):
    """2 token frames of 2 latent frames each; the reference latent is padded with its first frame in front."""
    assert amf15.grid == (2, 2, 3) and amf15.blocks == [1]
    assert amf15.amf(1).shape == (2, 2, 6, 2)
    latent = amf15.latent()
    assert latent.shape == (1, 4, 4, 4, 6) and torch.equal(latent[:, 0], latent[:, 1])


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_each_guidance_step(amf15, store15, mode, lr):
    gen = guide(amf15.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), runtime=RUNTIME,
                store=store15)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    assert gen.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and gen.frames.std() > 0


def test_emb_guide_then_inject_reproduces_it(amf15, store15):
    gen = guide(amf15.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST),
                runtime=RUNTIME, store=store15)
    embs = gen.embeddings()
    assert len(embs) == 2 and all(e.shape == (2, 2, 12, 16) for e in embs.values())  # q/k, cos/sin, tokens, dim
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=store15)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2
    plain = guide(amf15.hash, GuideConfig(prompt="a red circle", guidance=False, **FAST), runtime=RUNTIME, store=store15)
    assert np.abs(plain.frames.astype(int) - gen.frames.astype(int)).max() > 2  # the replayed tables matter


@pytest.mark.parametrize("loss,frames", [("moft", FRAMES), ("smm", 17)])
def test_kv_injection_with_moft_and_smm(amf15, tiny15, tmp_path, store15, loss, frames):
    """SMM compares each token frame's mean to every other's along time: with 2 token frames that is a sign,
    with no gradient, so its run takes 17 frames (5 latent + 1 padding = 3 token frames)."""
    from ditflow.video import write_video

    amf = amf15
    if frames != FRAMES:
        video = write_video(moving_square(frames=frames, step=2), tmp_path / "ref17.gif")
        amf = extract(video, ExtractConfig(model=tiny15, frames=frames, height=HEIGHT, width=WIDTH, blocks=(1,)),
                      runtime=RUNTIME, store=store15)
        assert amf.grid == (3, 2, 3)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", loss=loss, lr=(0.2, 0.2),
                                      **{**FAST, "injection": True}), runtime=RUNTIME, store=store15)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_fast_mode_runs(amf15, store15):
    gen = guide(amf15.hash, GuideConfig(prompt="a red circle", fast=True, lr=(0.2, 0.2), **FAST), runtime=RUNTIME,
                store=store15)
    assert gen.losses and np.isfinite([r["loss"] for r in gen.losses]).all()
    assert gen.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)


def test_the_chain_runs_through_the_cli(tiny15, ref_video, tmp_path, monkeypatch, capsys):
    """extract -> guide (emb) -> inject -> eval -> viz, as a user types it."""
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    amf = call("extract", ref_video, "--model", tiny15, "--frames", str(FRAMES), "--height", str(HEIGHT), "--width",
               str(WIDTH), "--blocks", "1", "-q")
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", "--steps", "4", "--guidance-range",
               "4,2", "--opt-steps", "2", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    # eval finds the reference through the cache; a tiny random model's noise may leave nothing to track
    code, _, err = run_cli(["eval", new, "--metrics", "mf", "--tracker", "lk", "-q", "--cache", str(tmp_path / "c")],
                           capsys, monkeypatch)
    assert code == 0 or (code == 2 and "no point could be tracked" in err), err
    still = call("viz", "compare", amf, gen, new, "--out", str(tmp_path / "cmp.png"))
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file() and (tmp_path / "cmp.png").is_file(), still


def test_a_batch_row_runs(tiny15, ref_video, tmp_path, monkeypatch, capsys):
    import csv

    (tmp_path / "a.gif").write_bytes(open(ref_video, "rb").read())
    (tmp_path / "runs.csv").write_text("video,prompt,setup\na.gif,a red circle,ditflow-latent\n")
    code, _, err = run_cli(["batch", str(tmp_path / "runs.csv"), "--model", tiny15, "--frames", str(FRAMES), "--height",
                            str(HEIGHT), "--width", str(WIDTH), "--steps", "4", "--guidance-range", "4,2",
                            "--opt-steps", "2", "--metrics", "mf", "--tracker", "lk", "-q", "--cache", str(tmp_path / "c"),
                            "--csv", str(tmp_path / "out.csv")], capsys, monkeypatch)
    rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    assert code == 0, err
    assert len(rows) == 1 and rows[0]["status"] == "ok" and len(rows[0]["gen"]) == 64


def test_cli_model_15_without_weights_is_one_line(empty_hf_home, tmp_path, monkeypatch, capsys, ref_video):
    code, out, err = run_cli(["extract", ref_video, "--model", "1.5-5b", "-q"], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 6 and out == "" and len(lines) == 1
    assert lines[0].startswith("error: ") and "`hf download THUDM/CogVideoX1.5-5B`" in lines[0]


def test_the_15_preset_and_its_names():
    from ditflow.backbones import ALIASES, PRESETS

    preset = PRESETS["1.5-5b"]
    assert preset.source == "THUDM/CogVideoX1.5-5B" and ALIASES["THUDM/CogVideoX1.5-5B"] == "1.5-5b"
    assert ALIASES["cogvideox1.5-5b"] == "1.5-5b"
    assert (preset.dtype, preset.frames, preset.height, preset.width, preset.steps, preset.cfg) == \
        ("bfloat16", 81, 768, 1360, 50, 6.0)
    assert preset.family == {"scheduler": "dpm", "dynamic_cfg": True} and preset.guidance_blocks == (20,)


def test_a_15_folder_gets_the_15_preset_by_its_layout(tmp_path):
    from dataclasses import replace

    from ditflow.backbones.cogvideox import PRESETS, preset_for

    layout = {"num_layers": 42, "num_attention_heads": 48, "use_rotary_positional_embeddings": True, "patch_size_t": 2}
    assert preset_for(str(tmp_path), layout) == replace(PRESETS["1.5-5b"], source=str(tmp_path))
    assert preset_for(str(tmp_path), {**layout, "patch_size_t": None}).height == PRESETS["5b"].height  # 1.0 5B


def test_another_15_folder_gets_its_own_pipelines_defaults(tiny15):
    from diffusers import CogVideoXPipeline

    from ditflow.backbones import resolve_model

    preset = resolve_model(tiny15).preset
    pipe = CogVideoXPipeline.from_pretrained(tiny15)
    cfg = pipe.transformer.config
    # CogVideoXPipeline's default size: the transformer's sample size times the VAE's spatial factor
    assert (preset.height, preset.width) == (cfg.sample_height * pipe.vae_scale_factor_spatial,
                                             cfg.sample_width * pipe.vae_scale_factor_spatial) == (HEIGHT, WIDTH)
    assert (preset.cfg, preset.negative_prompt, preset.family["scheduler"], preset.dtype) == (6.0, "", None, "float32")
    assert json.loads((resolve_model(tiny15).folder / "transformer" / "config.json").read_text())["patch_size_t"] == 2


def test_temporal_patches_without_rope_are_refused():
    """diffusers' sincos embedding counts a token per latent frame: such a model cannot run in its pipeline."""
    from types import SimpleNamespace

    from ditflow.backbones.cogvideox import CogVideoXBackbone
    from ditflow.errors import InputError

    adapter = SimpleNamespace(model=SimpleNamespace(arg="m"))
    pipe = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(patch_size_t=2,
                                                                              use_rotary_positional_embeddings=False)))
    with pytest.raises(InputError, match="temporal patches .* no RoPE is not supported"):
        CogVideoXBackbone.check_pipeline(adapter, pipe)
