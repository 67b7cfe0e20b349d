"""Wan 2.1 text-to-video through its backbone adapter, on a tiny random WanPipeline (real diffusers classes)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, decreases_within_each_step, extract_cfg
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError, ModelUnavailable
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)
RUNTIME = RuntimeOptions(device="cpu", quiet=True)


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory):
    from ditflow.tiny import build_tiny_wan_pipeline

    return str(build_tiny_wan_pipeline(tmp_path_factory.mktemp("tiny-wan")))


@pytest.fixture(scope="module")
def wan_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("wan-cache"))


@pytest.fixture(scope="module")
def wan_amf(tiny_wan, ref_video, wan_store):
    return extract(ref_video, extract_cfg(tiny_wan, moft_fraction=0.25), runtime=RUNTIME, store=wan_store)


def test_unguided_run_is_wan_pipeline_with_the_folders_scheduler(tiny_wan, wan_amf, wan_store):
    from diffusers import WanPipeline

    gen = guide(wan_amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                          injection=False, steps=4, seed=3), runtime=RUNTIME, store=wan_store)
    pipe = WanPipeline.from_pretrained(tiny_wan)
    ref = pipe("a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH, num_frames=FRAMES,
               num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(3),
               output_type="np").frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


def test_extract_gives_the_amf_of_attn1_qk(tiny_wan, wan_amf):
    """The AMF equals one computed from q/k rebuilt from attn1's own input with the stock processor's math."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from ditflow.amf import attention_motion_flow
    from ditflow.backbones import load_backbone

    assert wan_amf.grid == (3, 2, 3) and wan_amf.blocks == [1]
    assert wan_amf.amf(1).shape == (3, 3, 6, 2)
    backbone = load_backbone(tiny_wan, "float32", RUNTIME)
    attn = backbone.blocks[1].attn1
    assert isinstance(attn.processor, WanAttnProcessor)  # stock processors outside our context managers
    seen = {}

    def keep(_module, args, kwargs):
        seen["x"], seen["rope"] = args[0], kwargs.get("rotary_emb", args[3] if len(args) > 3 else None)

    handle = attn.register_forward_pre_hook(keep, with_kwargs=True)
    geo = backbone.geometry(FRAMES, HEIGHT, WIDTH)
    with torch.no_grad():
        backbone.forward(wan_amf.latent(), torch.tensor(0), backbone.encode_prompt(""), geo)
    handle.remove()
    x, (cos, sin) = seen["x"], seen["rope"]

    def rotated(t):
        t = t.unflatten(2, (attn.heads, -1))
        x1, x2 = t.unflatten(-1, (-1, 2)).unbind(-1)
        out = torch.empty_like(t)
        out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
        out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
        return out.type_as(t)[0].transpose(0, 1)  # [H, N, D]

    q, k = rotated(attn.norm_q(attn.to_q(x))), rotated(attn.norm_k(attn.to_k(x)))
    expected = attention_motion_flow(q, k, wan_amf.grid, wan_amf.temperature, mode="argmax").float()
    assert torch.equal(wan_amf.amf(1).float(), expected)


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step(wan_amf, wan_store, mode, lr):
    gen = guide(wan_amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), runtime=RUNTIME,
                store=wan_store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    assert np.isfinite(gen.frames.astype(float)).all() and gen.frames.std() > 0


def test_emb_guide_then_inject_reproduces_it(wan_amf, wan_store):
    gen = guide(wan_amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST),
                runtime=RUNTIME, store=wan_store)
    embs = gen.embeddings()
    assert len(embs) == 2 and all(e.shape == (1, 18, 1, 6) for e in embs.values())  # angles [1, S, 1, D/2]
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=wan_store)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2
    plain = guide(wan_amf.hash, GuideConfig(prompt="a red circle", guidance=False, **FAST), runtime=RUNTIME, store=wan_store)
    assert np.abs(plain.frames.astype(int) - gen.frames.astype(int)).max() > 2  # the replayed angles matter


def test_latent_guidance_steps_with_flow_match_euler(tiny_wan):
    """UniPC's corrector rebuilds x_t from the previous sample: a guided latent needs a scheduler that keeps it."""
    from ditflow.backbones import load_backbone

    assert type(load_backbone(tiny_wan, "float32", RUNTIME).scheduler).__name__ == "UniPCMultistepScheduler"
    euler = load_backbone(tiny_wan, "float32", RUNTIME, keeps_latent=True).scheduler
    assert type(euler).__name__ == "FlowMatchEulerDiscreteScheduler" and euler.config.shift == 3.0


@pytest.mark.parametrize("loss", ["moft", "smm"])
def test_kv_injection_with_moft_and_smm(wan_amf, wan_store, loss):
    gen = guide(wan_amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", loss=loss, lr=(0.2, 0.2),
                                          **{**FAST, "injection": True}), runtime=RUNTIME, store=wan_store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_wan_frames_must_be_4k_plus_1(tiny_wan, ref_video, wan_store, no_model):
    with pytest.raises(InputError, match=r"Wan takes 4k\+1 frames.*--frames 5 or 9"):
        extract(ref_video, ExtractConfig(model=tiny_wan, frames=8, height=HEIGHT, width=WIDTH, blocks=(1,)),
                runtime=RUNTIME, store=wan_store)


@pytest.mark.parametrize("family", [{"scheduler": "dpm"}, {"dynamic_cfg": True}, {"dynamic_cfg": False}])
def test_cogvideox_settings_are_refused_before_loading(wan_amf, wan_store, family, no_model):
    """Another family's setting is an error (never ignored, whatever its value), before any weights load."""
    name = next(iter(family)).replace("_", "-")
    with pytest.raises(InputError, match=f"^--{name} is a CogVideoX setting; .* is a Wan model$"):
        guide(wan_amf.hash, GuideConfig(prompt="a red circle", family=family, guidance=False, steps=2, cfg=1.0),
              runtime=RUNTIME, store=wan_store)


def test_presets_and_missing_weights(empty_hf_home, tmp_path, ref_video):
    from ditflow.backbones import ALIASES, PRESETS

    assert PRESETS["wan-1.3b"].source == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert PRESETS[ALIASES["Wan-AI/Wan2.1-T2V-14B-Diffusers"]].guidance_blocks == (20,)
    with pytest.raises(ModelUnavailable) as err:
        extract(ref_video, ExtractConfig(model="wan-1.3b"), runtime=RUNTIME, store=Store(tmp_path / "cache"))
    message = str(err.value)
    assert "\n" not in message and "`hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers`" in message


def test_unsupported_pipeline_class_is_one_line(tmp_path):
    from ditflow.backbones import resolve_model

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InputError) as err:
        resolve_model(str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "FluxPipeline" in message and "CogVideoXPipeline, WanPipeline" in message


def test_cli_model_wan_without_weights_is_one_line(empty_hf_home, tmp_path, monkeypatch, capsys, ref_video):
    from helpers import run_cli

    code, out, err = run_cli(["extract", ref_video, "--model", "wan-1.3b", "-q"], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 6 and out == "" and len(lines) == 1
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in lines[0] and "hf download" in lines[0]


def test_the_whole_chain_runs_on_a_wan_folder_through_the_cli(tiny_wan, ref_video, tmp_path, monkeypatch, capsys):
    """extract -> guide (emb) -> inject -> eval -> viz -> cache ls, as a user types it."""
    from helpers import run_cli

    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    amf = call("extract", ref_video, "--model", tiny_wan, "--frames", "9", "--height", str(HEIGHT), "--width",
               str(WIDTH), "--blocks", "1", "-q")
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", "--cfg", "5", "--seed", "3",
               "--steps", "4", "--guidance-range", "4,2", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    # eval finds the inject's reference through the cache; a tiny random model's noise has nothing to track
    code, _, err = run_cli(["eval", new, "--metrics", "mf", "--tracker", "lk", "-q", "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 2 and "no point could be tracked" in err
    still = call("viz", "compare", amf, gen, new, "--out", str(tmp_path / "cmp.png"))
    listing = call("cache", "ls")
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file() and Path(still).is_file()
    assert gen[:12] in listing and "inject" in listing


@pytest.mark.parametrize("argv", [["--dynamic-cfg"], ["--no-dynamic-cfg", "--cfg", "1"], ["--scheduler", "dpm"]])
def test_cli_refuses_cogvideox_settings_on_wan_before_loading(argv, wan_amf, wan_store, no_model, capsys, monkeypatch):
    from helpers import run_cli

    code, out, err = run_cli(["guide", "--amf", wan_amf.hash, "-p", "a red circle", *argv, "--cache", str(wan_store.root)],
                             capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith(f"error: {argv[0].replace('--no-', '--')} is a CogVideoX setting")
