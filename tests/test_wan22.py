"""Wan 2.2 through the Wan adapter, on tiny random WanPipelines built from the real diffusers classes: T2V-A14B's
two experts (high noise `transformer`, low noise `transformer_2`, boundary 0.875) and TI2V-5B's 48-channel
16x latent with per-token timesteps."""
import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, decreases_within_each_step, one_error_line, run_cli
from ditflow.backbones import load_backbone, resolve_model
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
FAST = dict(steps=6, guidance_range=(6, 4), opt_steps=3, injection=False)  # A14B: both guided steps on the high-noise expert
WIDTH = {"2.2-a14b": 48, "2.2-ti2v-5b": 64}  # TI2V-5B: 16x VAE x patch 2 = multiples of 32


@pytest.fixture(scope="module", params=["2.2-a14b", "2.2-ti2v-5b"])
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def folder(variant, tmp_path_factory):
    from ditflow.tiny import build_tiny_wan_pipeline

    return str(build_tiny_wan_pipeline(tmp_path_factory.mktemp(f"wan{variant}"), variant=variant))


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    from ditflow.tiny import build_tiny_wan_pipeline

    return str(build_tiny_wan_pipeline(tmp_path_factory.mktemp("a14b"), variant="2.2-a14b"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("wan22-cache"))


def _extract_cfg(model, width, **kw):
    return ExtractConfig(model=model, frames=FRAMES, height=HEIGHT, width=width, blocks=(1,), **kw)


@pytest.fixture(scope="module")
def amf(folder, variant, ref_video, cache):
    return extract(ref_video, _extract_cfg(folder, WIDTH[variant], moft_fraction=0.25), runtime=RUNTIME, store=cache)


def test_unguided_run_is_wan_pipeline(folder, variant, amf, cache):
    """A14B: 4 UniPC steps at shift 3 run two steps on each expert; TI2V-5B: per-token timesteps, z48 latent."""
    from diffusers import WanPipeline

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=4, seed=3, cfg=4.0), runtime=RUNTIME, store=cache)
    pipe = WanPipeline.from_pretrained(folder)
    kw = {"guidance_scale_2": 3.0} if variant == "2.2-a14b" else {}
    ref = pipe("a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH[variant], num_frames=FRAMES,
               num_inference_steps=4, guidance_scale=4.0, generator=torch.Generator().manual_seed(3),
               output_type="np", **kw).frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH[variant], 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


def test_a14b_runs_both_experts_with_cfg_low_noise_on_the_second(a14b):
    backbone = load_backbone(a14b, "float32", RUNTIME, family={"cfg_low_noise": 3.0})
    ts = backbone.timesteps(4)
    assert [backbone.expert_for(t) for t in ts] == [0, 0, 1, 1]
    assert [backbone.cfg_scale(4.0, 4, t) for t in ts] == [4.0, 4.0, 3.0, 3.0]


def test_the_stored_amf_is_the_high_noise_experts(a14b, ref_video, cache):
    """Extraction at t = 0 runs the guided (high-noise) expert, not the one WanPipeline's rule picks for t = 0."""
    from ditflow.amf import attention_motion_flow
    from ditflow.model import Model
    from ditflow.processors import QKRecorder

    art = extract(ref_video, _extract_cfg(a14b, WIDTH["2.2-a14b"]), runtime=RUNTIME, store=cache)
    backbone = load_backbone(a14b, "float32", RUNTIME)
    model = Model(backbone, backbone.geometry(FRAMES, HEIGHT, WIDTH["2.2-a14b"]))
    text = backbone.encode_prompt("")
    flows = []
    for expert in (0, 1):
        rec = QKRecorder()
        with torch.no_grad(), backbone.install({1: rec}):
            model.forward(art.latent(), torch.tensor(0), text, expert=expert)
        flows.append(attention_motion_flow(rec.q.float(), rec.k.float(), art.grid, art.temperature, mode="argmax").float())
    assert backbone.expert_for(torch.tensor(0)) == 1
    assert torch.equal(art.amf(1).float(), flows[0]) and not torch.equal(flows[0], flows[1])


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step(amf, cache, mode, lr):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    assert np.isfinite(gen.frames.astype(float)).all() and gen.frames.std() > 0


def test_emb_guide_then_inject_reproduces_it(amf, cache):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST), runtime=RUNTIME,
                store=cache)
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=cache)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2


@pytest.mark.parametrize("loss", ["moft", "smm"])
def test_kv_injection_with_moft_and_smm(amf, cache, loss):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", loss=loss, lr=(0.2, 0.2), **{**FAST, "injection": True}),
                runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_fast_mode_runs_windowed_with_gradient_reuse(amf, cache):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", fast=True, lr=(0.2, 0.2), **FAST), runtime=RUNTIME, store=cache)
    assert gen.inputs["amf_window"] == 10 and gen.inputs["grad_reuse"] == 3
    assert len(gen.losses) == 2 * FAST["opt_steps"] and np.isfinite([r["loss"] for r in gen.losses]).all()


def test_a_guidance_range_on_the_low_noise_expert_is_refused_before_loading(a14b, ref_video, cache, no_model):
    art = extract(ref_video, _extract_cfg(a14b, WIDTH["2.2-a14b"]), runtime=RUNTIME, store=cache)
    with pytest.raises(InputError, match=r"guides step 2, where the low-noise expert runs .* keep LO >= 4$"):
        guide(art.hash, GuideConfig(prompt="a red circle", steps=6, guidance_range=(6, 3)), runtime=RUNTIME, store=cache)


def test_cfg_low_noise_is_refused_before_loading_where_there_is_one_expert(folder, variant, no_model):
    cfg = GuideConfig(prompt="a red circle", family={"cfg_low_noise": 2.0}, **FAST)
    if variant == "2.2-a14b":
        assert resolve_model(folder).guide_config(cfg).family == {"cfg_low_noise": 2.0}
        return
    with pytest.raises(InputError, match="--cfg-low-noise is for two-expert Wan 2.2 models"):
        resolve_model(folder).guide_config(cfg)


def test_offload_keeps_one_expert_on_the_device(a14b, monkeypatch):
    """With model CPU offload, running one expert sends the other back to the CPU (diffusers' chain does not when
    an earlier model runs again)."""
    backbone = load_backbone(a14b, "float32", RUNTIME)
    high, low = backbone.experts
    moved = []
    monkeypatch.setattr(backbone, "offloaded", True)
    monkeypatch.setattr(high, "to", lambda device: moved.append(("high", device)))
    monkeypatch.setattr(low, "to", lambda device: moved.append(("low", device)))
    monkeypatch.setattr(type(next(low.parameters())), "device", property(lambda _: torch.device("cuda", 0)))
    assert backbone._expert_on_device(0) is high and moved == [("low", "cpu")]


def test_timestep_extraction_is_hashed_and_changes_the_amf(folder, variant, ref_video, cache, amf):
    noised = extract(ref_video, _extract_cfg(folder, WIDTH[variant], moft_fraction=0.25, timestep=500), runtime=RUNTIME,
                     store=cache)
    other_seed = extract(ref_video, _extract_cfg(folder, WIDTH[variant], moft_fraction=0.25, timestep=500, seed=2),
                         runtime=RUNTIME, store=cache)
    assert len({amf.hash, noised.hash, other_seed.hash}) == 3
    assert noised.inputs["timestep"] == 500 and "timestep" not in amf.inputs  # t = 0 keeps the hashes it had
    assert not torch.equal(noised.amf(1), amf.amf(1))
    assert torch.equal(noised.latent(), amf.latent())  # the clean latent is what injection uses


@pytest.mark.parametrize("shape,preset", [("2.2-a14b", "wan2.2-a14b"), ("2.2-ti2v-5b", "wan2.2-ti2v-5b")])
def test_a_folder_with_a_released_layout_gets_its_preset(tmp_path, shape, preset):
    """Matched by experts, layers, heads and latent channels (config files only), not by layers and heads alone."""
    import json

    from ditflow.backbones import PRESETS
    from ditflow.tiny import build_tiny_wan_pipeline

    folder = build_tiny_wan_pipeline(tmp_path / "m", variant=shape)
    cfg_path = folder / "transformer" / "config.json"
    heads = {"wan2.2-a14b": 40, "wan2.2-ti2v-5b": 24}[preset]
    layers = {"wan2.2-a14b": 40, "wan2.2-ti2v-5b": 30}[preset]
    for part in ("transformer", "transformer_2"):
        path = folder / part / "config.json"
        if path.is_file():
            cfg = json.loads(path.read_text())
            path.write_text(json.dumps({**cfg, "num_attention_heads": heads, "num_layers": layers}))
    got = resolve_model(str(folder)).preset
    assert cfg_path.is_file() and got.frames == PRESETS[preset].frames and got.cfg == PRESETS[preset].cfg
    assert got.family == PRESETS[preset].family and got.height == PRESETS[preset].height


@pytest.mark.parametrize("name,hub", [("wan2.2-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers"),
                                      ("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers")])
def test_cli_named_preset_without_weights_is_one_line_exit_6(empty_hf_home, name, hub, tmp_path, monkeypatch, capsys, ref_video):
    code, out, err = run_cli(["extract", ref_video, "--model", name, "-q"], capsys, monkeypatch)
    assert code == 6 and out == ""
    assert f"hf download {hub}" in one_error_line(err)


def test_the_whole_chain_runs_through_the_cli(folder, variant, ref_video, tmp_path, monkeypatch, capsys):
    """extract -> guide (emb) -> inject -> eval -> viz -> a batch row, as a user types them."""
    from pathlib import Path

    def call(*argv, code=0):
        got, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert got == code, err
        return out.strip() if code == 0 else err

    size = ["--model", folder, "--frames", "9", "--height", str(HEIGHT), "--width", str(WIDTH[variant]), "--blocks", "1", "-q"]
    amf = call("extract", ref_video, *size)
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", "--seed", "3", "--steps", "6",
               "--guidance-range", "6,4", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    # a tiny random model's noise has nothing to track: eval runs and says so
    assert "no point could be tracked" in call("eval", new, "--metrics", "mf", "--tracker", "lk", "-q", code=2)
    still = call("viz", "compare", amf, gen, new, "--out", str(tmp_path / "cmp.png"))
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file() and Path(still).is_file()
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup\n{ref_video},a red circle,ditflow-emb\n")
    call("batch", str(runs), *size, "--steps", "6", "--guidance-range", "6,4", "--lr", "0.05,0.05", "--metrics", "clip",
         "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text()
