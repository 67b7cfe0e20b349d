"""ditflow plan: the simulated memory of a run (fake weights) against the same run measured on the CPU, the plan's
command line, and guide's refusal of a run that cannot fit (before any weights load)."""
import json

import pytest

from helpers import FRAMES, HEIGHT, WIDTH, run_cli
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions

SIZE = ["--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1"]
RUNTIME = RuntimeOptions(device="cpu", quiet=True)


@pytest.fixture(scope="module")
def simulated_and_measured(tiny_rope):
    from ditflow.backbones import resolve_model
    from ditflow.plan.simulate import measure, simulate

    spec = resolve_model(tiny_rope)
    ecfg = spec.extract_config(ExtractConfig(model=tiny_rope, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,)))
    gcfg = spec.guide_config(GuideConfig(prompt="a red circle", steps=4, guidance_range=(4, 2), opt_steps=2))
    return simulate(spec, ecfg, gcfg, RUNTIME), measure(spec, ecfg, gcfg, RUNTIME)


def test_simulated_phases_match_the_cpu_run_within_ten_percent(simulated_and_measured):
    sim, real = simulated_and_measured
    assert set(sim.phases) == set(real.phases) == {"text encoding", "reference encoding", "extraction", "unguided step"}
    windows = [(sim.phases[n], real.phases[n]) for n in sim.phases]
    windows += [(sim.guided[ck], real.guided[ck]) for ck in (False, True)]
    assert set(sim.decode) == set(real.decode) and sim.tiling == real.tiling  # tiles where the VAE can make them
    windows += [(sim.decode[tiled], real.decode[tiled]) for tiled in sim.decode]
    for s, r in windows:
        assert r.peak > 0 and abs(s.peak - r.peak) <= 0.1 * r.peak
    assert sim.weights == real.weights


def test_checkpointing_lowers_the_guided_steps_activations(simulated_and_measured):
    sim, real = simulated_and_measured
    for run in (sim, real):
        assert run.guided[True].peak < run.guided[False].peak


def test_the_simulation_runs_a_fused_attention_kernel_and_counts_flops(simulated_and_measured):
    sim, _ = simulated_and_measured
    assert any("flash" in k or "efficient" in k for k in sim.attention)  # no attention matrix kept
    assert sim.guided[False].flops > sim.phases["unguided step"].flops > 0


def test_offload_keeps_only_the_running_model_resident(simulated_and_measured):
    from ditflow.plan.estimate import Placement, plan_of

    sim, _ = simulated_and_measured
    phases = {p.name: p for p in plan_of(sim, Placement(offload=True)).phases}
    assert set(phases["decode"].weights) == {"vae"} and set(phases["guided step"].weights) == {"transformer"}
    on_device = {p.name: p for p in plan_of(sim, Placement()).phases}
    assert "text_encoder" in on_device["text encoding"].weights and "text_encoder" not in on_device["guided step"].weights
    cpu_text = {p.name: p for p in plan_of(sim, Placement(text_encoder="cpu")).phases}
    assert "text_encoder" not in cpu_text["text encoding"].weights


def test_plan_prints_the_phases_and_whether_the_run_fits(tiny_rope, capsys, monkeypatch):
    code, out, err = run_cli(["plan", "--model", tiny_rope, *SIZE, "--steps", "4", "--guidance-range", "4,2",
                              "--max-memory", "8", "--gpu", "h100"], capsys, monkeypatch)
    assert code == 0, err
    for phase in ("text encoding", "extraction", "guided step", "unguided step", "decode"):
        assert phase in out
    assert "fits in 8.0 GiB" in out and "time on h100 (roofline estimate" in out and "largest frame count" in out


def test_plan_json_holds_peak_and_fits_and_a_tiny_limit_does_not_fit(tiny_rope, capsys, monkeypatch):
    code, out, err = run_cli(["plan", "--model", tiny_rope, *SIZE, "--steps", "4", "--guidance-range", "4,2",
                              "--max-memory", "0.001", "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["fits"] is False and doc["peak_bytes"] > 0 and doc["simulated"] is True and doc["max_frames"] is None


def test_plan_needs_a_limit_on_a_machine_without_a_gpu(tiny_rope, capsys, monkeypatch):
    code, _, err = run_cli(["plan", "--model", tiny_rope, *SIZE], capsys, monkeypatch)
    assert code == 2 and err.startswith("error:") and "--max-memory" in err and len(err.strip().splitlines()) == 1


def test_plan_of_a_preset_needs_no_weights(offline, capsys, monkeypatch):
    """The released configuration of a preset, at the real width, from a folder of config files only."""
    code, out, err = run_cli(["plan", "--model", "2b", "--frames", "9", "--height", "64", "--width", "96",
                              "--steps", "4", "--guidance-range", "4,3", "--gpu", "4090", "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    weights = doc["plan"]["phases"][0]["weights"]
    assert 9e9 < weights["text_encoder"] < 1e10  # T5-XXL in bf16... the 2B's fp16: 9.5 GB either way
    assert doc["max_memory_bytes"] == int(24e9)


def test_guide_refuses_a_run_that_cannot_fit_before_loading(amf_cache, no_model, capsys, monkeypatch):
    cache, h = amf_cache
    code, out, err = run_cli(["guide", "--amf", h, "--prompt", "a red circle", "--steps", "4", "--guidance-range", "4,2",
                              "--max-memory", "0.001", "--cache", str(cache), "-q"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: this run needs about") and "GiB" in err and len(err.strip().splitlines()) == 1
    assert "no frame count fits at 32x48" in err  # what would fit: here nothing, at this size


def test_guide_takes_the_cheapest_placement_that_fits(tiny_rope):
    from ditflow.plan.api import fit_runtime

    ecfg = ExtractConfig(model=tiny_rope, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,))
    gcfg = GuideConfig(prompt="a red circle", steps=4, guidance_range=(4, 2))
    roomy = fit_runtime(tiny_rope, ecfg, gcfg, RuntimeOptions(device="cpu", max_memory=8), image=False)
    assert (roomy.gradient_checkpointing, roomy.cpu_offload, roomy.text_encoder) == (False, False, "device")
    free = fit_runtime(tiny_rope, ecfg, gcfg, RuntimeOptions(device="cpu"), image=False)  # no limit known: nothing on
    assert (free.gradient_checkpointing, free.cpu_offload) == (False, False)


def test_plan_of_an_audio_video_model_counts_its_every_component(tiny_ltx2, capsys, monkeypatch):
    """LTX-2: a Gemma 3 text encoder, connectors, audio VAE and vocoder beside the video's models."""
    code, out, err = run_cli(["plan", "--model", tiny_ltx2, "--frames", "9", "--height", "32", "--width", "64", "--blocks",
                              "1", "--steps", "4", "--guidance-range", "4,2", "--max-memory", "8", "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    weights = doc["plan"]["phases"][0]["weights"]
    assert {"text_encoder", "connectors", "transformer", "vae", "audio_vae", "vocoder"} <= set(weights) and doc["fits"]


def test_the_limit_counts_what_this_process_holds_on_the_gpu(monkeypatch):
    """A batch worker's loaded model is reused: its memory is available to the next row's plan."""
    import torch

    from ditflow.plan.api import device_limit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 20 << 30)
    assert device_limit(RuntimeOptions(device="cuda")) == 23 << 30
    assert device_limit(RuntimeOptions(device="cuda", max_memory=5)) == 5 << 30


def test_rows_that_differ_only_in_prompt_and_seed_share_one_plan(tiny_rope, monkeypatch):
    from ditflow.plan import api

    calls = []
    real = api.plan_run
    monkeypatch.setattr(api, "plan_run", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ecfg = ExtractConfig(model=tiny_rope, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,))
    rt = RuntimeOptions(device="cpu", max_memory=7.5)
    for prompt, seed in (("a red circle", 1), ("a blue square", 2)):
        api.fit_runtime(tiny_rope, ecfg, GuideConfig(prompt=prompt, seed=seed, steps=4, guidance_range=(4, 2)), rt, image=False)
    assert len(calls) == 1


def test_a_refusal_names_the_frame_count_that_fits(tiny_rope, monkeypatch):
    """Between the run's own need and a tiny limit: the message names a shorter run that fits."""
    from ditflow.errors import InputError
    from ditflow.plan import api

    ecfg = ExtractConfig(model=tiny_rope, frames=17, height=HEIGHT, width=WIDTH, blocks=(1,))
    gcfg = GuideConfig(prompt="a red circle", steps=4, guidance_range=(4, 2))
    report = api.plan_run(tiny_rope, ecfg, gcfg, RuntimeOptions(), limit=None, search_frames=False, stage="guide")
    short = api.plan_run(tiny_rope, ExtractConfig(model=tiny_rope, frames=5, height=HEIGHT, width=WIDTH, blocks=(1,)), gcfg,
                         RuntimeOptions(), limit=None, search_frames=False, stage="guide")
    need = min(p.needed_bytes for p in report.candidates if not p.placement.vae_tiling)
    short_need = min(p.needed_bytes for p in short.candidates if not p.placement.vae_tiling)
    limit_gib = (need + short_need) / 2 / 2**30
    with pytest.raises(InputError) as e:
        api.fit_runtime(tiny_rope, ecfg, gcfg, RuntimeOptions(device="cpu", max_memory=limit_gib), image=False)
    frames = int(str(e.value).split("--frames ")[1].split()[0])
    assert 5 <= frames < 17


def test_a_cpu_text_encoder_is_never_moved_to_the_gpu(tiny_rope, monkeypatch):
    """--text-encoder cpu: every other model goes to the device, the text encoder stays (no transient peak)."""
    import torch

    from ditflow.backbones import load_backbone
    from ditflow.backbones.placement import place_pipeline

    pipe = load_backbone(tiny_rope, "float32", RUNTIME).pipe
    moves = []
    for name, part in pipe.components.items():
        if isinstance(part, torch.nn.Module):
            monkeypatch.setattr(part, "to", lambda device, name=name: moves.append((name, str(device))))
    placed = place_pipeline(pipe, RuntimeOptions(device="cuda", text_encoder="cpu"), "cuda", ("text_encoder",))
    assert placed == (False, True)
    assert sorted(moves) == [("transformer", "cuda"), ("vae", "cuda")]


@pytest.mark.parametrize("method", ["flowmotion", "ropecraft", "fastvmt"])
def test_every_method_is_planned(method, tiny_rope, capsys, monkeypatch):
    """Each method's own guide runs on fake weights (RoPECraft's flow computed, never written from fake tensors)."""
    code, out, err = run_cli(["plan", "--model", tiny_rope, *SIZE, "--steps", "4", "--guidance-range", "4,2",
                              "--method", method, "--max-memory", "8", "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == method and doc["fits"] and any(p["name"] == "guided step" for p in doc["plan"]["phases"])
