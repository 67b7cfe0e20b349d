"""End-to-end behaviour of extract / guide / inject on tiny random CogVideoX models (CPU)."""
import numpy as np
import pytest
import torch

from conftest import FRAMES, HEIGHT, WIDTH, extract_cfg
from ditflow import stages
from ditflow.config import GuideConfig
from ditflow.errors import IncompatibleArtifact, InputError
from ditflow.stages import InjectConfig, extract, guide, inject

FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=4)


@pytest.mark.parametrize("scheduler,dynamic", [("ddim", False), ("dpm", True)])
def test_unguided_matches_diffusers_pipeline(tiny_rope, ref_video, store, runtime, scheduler, dynamic):
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=5, cfg=6.0, seed=3, scheduler=scheduler, dynamic_cfg=dynamic),
                runtime=runtime, store=store)
    pipe = CogVideoXPipeline.from_pretrained(tiny_rope)
    if scheduler == "dpm":
        pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    ref = pipe("a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH, num_frames=FRAMES,
               num_inference_steps=5, guidance_scale=6.0, use_dynamic_cfg=dynamic,
               generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=16).frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


def _decreases(losses, opt_steps):
    """Within every guidance step the loss after optimising is below the first evaluation."""
    by_step = {}
    for r in losses:
        by_step.setdefault(r["step"], []).append(r["loss"])
    assert by_step and all(len(v) == opt_steps for v in by_step.values())
    return all(v[-1] < v[0] for v in by_step.values())


@pytest.mark.parametrize("mode", ["latent", "emb"])
@pytest.mark.parametrize("loss", ["flow", "moft", "smm"])
def test_loss_decreases(tiny_rope, ref_video, store, runtime, mode, loss):
    amf = extract(ref_video, extract_cfg(tiny_rope, moft_fraction=0.25), runtime=runtime, store=store)
    lr = (0.2, 0.2) if mode == "latent" else (0.05, 0.05)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, loss=loss, lr=lr, **FAST),
                runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])


def test_confidence_weighted_flow_loss(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    conf = amf.confidence(amf.blocks[0])
    f, h, w = amf.grid
    assert conf.shape == (f, f, h * w) and bool(((conf >= 1 / (h * w) - 1e-3) & (conf <= 1)).all())
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), loss_weighting="confidence",
                                      **FAST), runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    plain = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST), runtime=runtime, store=store)
    assert [r["loss"] for r in plain.losses] != [r["loss"] for r in gen.losses]
    salient = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), loss_weighting="salient",
                                          **FAST), runtime=runtime, store=store)
    assert [r["loss"] for r in salient.losses] != [r["loss"] for r in gen.losses]
    mutual = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), loss_weighting="mutual",
                                         **FAST), runtime=runtime, store=store)
    assert _decreases(mutual.losses, FAST["opt_steps"])
    assert [r["loss"] for r in mutual.losses] != [r["loss"] for r in gen.losses]


def test_soft_reference_flow_is_stored_and_guides(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    soft, hard = amf.soft_amf(1), amf.amf(1)
    assert soft.shape == hard.shape and not torch.equal(soft, soft.round())  # expected positions, not whole patches
    f, h, w = amf.grid
    assert soft[..., 0].abs().max() <= w - 1 and soft[..., 1].abs().max() <= h - 1
    cfg = dict(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST)
    gen = guide(amf.hash, GuideConfig(reference_flow="soft", **cfg), runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    paper = guide(amf.hash, GuideConfig(reference_flow="argmax", **cfg), runtime=runtime, store=store)
    assert paper.hash != gen.hash and [r["loss"] for r in paper.losses] != [r["loss"] for r in gen.losses]
    with pytest.raises(InputError, match="reference-flow"):
        GuideConfig(reference_flow="mean").validate()


def test_an_amf_from_before_the_soft_flow_names_the_option_that_needs_it(store):
    from ditflow import artifacts
    from ditflow.errors import IncompatibleArtifact

    from ditflow.store import content_key

    flow = torch.zeros(2, 2, 4, 2)
    h = content_key("amf", {"blocks": [1]})  # the store checks an object's name against its inputs
    with store.writer(h, "amf", {"blocks": [1]}, extra={"grid": [2, 2, 2]}) as folder:
        artifacts.write_amf(folder, frames=np.zeros((5, 8, 8, 3), np.uint8), latent=torch.zeros(1, 2, 4, 4, 4),
                            amf={1: flow}, features={1: torch.zeros(2, 4, 2, 2)}, moft={1: torch.zeros(1)})
    old = artifacts.load(store, h, "amf")
    assert torch.equal(old.amf(1), flow)
    with pytest.raises(IncompatibleArtifact, match="--reference-flow soft"):
        old.soft_amf(1)
    with pytest.raises(IncompatibleArtifact, match="--loss-weighting confidence"):
        old.confidence(1)


def test_normalized_gradient_has_unit_rms_and_keeps_proportions():
    from ditflow.sampling import normalized_gradient

    g = torch.tensor([[0.0, 1e-4], [3e-4, -2e-4]])
    n = normalized_gradient(g)
    assert torch.isclose(n.pow(2).mean(), torch.tensor(1.0))
    assert torch.allclose(n * g.pow(2).mean().sqrt(), g)  # same direction, zero stays zero
    assert torch.equal(normalized_gradient(torch.zeros(3)), torch.zeros(3))


def test_normalized_optimizer_lowers_the_loss_and_keys_the_artifact(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), optimizer="normalized", **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    adam = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), optimizer="adam", **FAST),
                 runtime=runtime, store=store)
    assert adam.hash != gen.hash and not np.array_equal(adam.frames, gen.frames)


def test_blurred_gradient_removes_fine_texture_and_keeps_the_mean():
    from ditflow.sampling import blurred_gradient

    g = torch.zeros(1, 2, 3, 16, 16)
    g[..., ::2, :] = 1.0  # a stripe pattern, the finest a latent can hold
    b = blurred_gradient(g, 1.5)
    assert b.shape == g.shape and torch.isclose(b.mean(), g.mean(), atol=1e-3)
    assert b.std() < 0.05 * g.std()  # the stripes are gone
    assert torch.equal(blurred_gradient(g, 0.0), g)
    assert blurred_gradient(torch.randn(1, 1, 1, 4, 4), 50.0).shape == (1, 1, 1, 4, 4)  # sigma past the side


def test_grad_blur_lowers_the_loss_and_keys_the_artifact(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    base = dict(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), optimizer="normalized", **FAST)
    gen = guide(amf.hash, GuideConfig(grad_blur=1.0, **base), runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    sharp = guide(amf.hash, GuideConfig(**base), runtime=runtime, store=store)
    assert sharp.hash != gen.hash and not np.array_equal(sharp.frames, gen.frames)
    with pytest.raises(InputError):
        GuideConfig(grad_blur=-1.0).validate()


def test_coarse_offset_spreads_smoothly_over_the_latent():
    from ditflow.sampling import coarse_offset, upsampled

    latent = torch.randn(1, 2, 3, 16, 12)
    off = coarse_offset(latent, 4)
    assert off.shape == (1, 2, 3, 4, 3) and not off.any()
    off = torch.randn_like(off)
    up = upsampled(off, latent.shape[-2:])
    assert up.shape == latent.shape
    assert torch.isclose(up.mean(), off.mean(), atol=0.1)  # the coarse entries' level, spread
    # smooth: neighbouring latent pixels differ far less than neighbouring coarse entries
    assert up.diff(dim=-1).abs().mean() < 0.5 * off.diff(dim=-1).abs().mean()
    assert coarse_offset(torch.zeros(1, 1, 1, 5, 5), 2).shape[-2:] == (3, 3)  # a side that does not divide


def test_latent_stride_lowers_the_loss_and_keeps_old_hashes(tiny_rope, ref_video, store, runtime):
    from ditflow.config import hashed_settings, settings

    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    base = dict(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST)
    gen = guide(amf.hash, GuideConfig(latent_stride=2, **base), runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    fine = guide(amf.hash, GuideConfig(latent_stride=1, **base), runtime=runtime, store=store)
    assert fine.hash != gen.hash and not np.array_equal(fine.frames, gen.frames)
    # stride 1 is what ran before the option existed: it stays out of the hash, so caches stay valid
    assert "latent_stride" not in hashed_settings(GuideConfig(latent_stride=1))
    assert hashed_settings(GuideConfig(latent_stride=2))["latent_stride"] == 2
    assert "latent_stride" in settings(GuideConfig(latent_stride=1))
    with pytest.raises(InputError):
        GuideConfig(latent_stride=0).validate()


def test_sincos_model_emb_mode(tiny_sincos, ref_video, store, runtime):
    """2B-like models optimise the sincos embedding (through a patch-embed hook) and can be replayed."""
    amf = extract(ref_video, extract_cfg(tiny_sincos), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    embs = gen.embeddings()
    assert len(embs) == 2 and all(e.ndim == 2 for e in embs.values())
    again = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=runtime, store=store)
    assert np.array_equal(again.frames, gen.frames)


def test_inject_reproduces_emb_run_and_transfers(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST),
                runtime=runtime, store=store)
    embs = gen.embeddings()
    assert sorted(embs) == gen.meta["embedding_timesteps"] and len(embs) == 2
    assert all(e.shape[:2] == (2, 2) for e in embs.values())  # q/k x cos/sin tables
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=runtime, store=store)
    assert np.array_equal(same.frames, gen.frames)
    other = inject(gen.hash, InjectConfig(prompt="a blue square"), runtime=runtime, store=store)
    assert not np.array_equal(other.frames, gen.frames)
    assert other.meta["parents"] == [amf.hash, gen.hash]


def test_emb_angles_stay_rotations_and_carry_to_the_end(tiny_rope, ref_video, store, runtime):
    """emb_param=angle keeps every table a rotation (cos² + sin² = 1); emb_after=carry keeps using the last
    optimised tables after the range, and inject replays them at those steps too."""
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), emb_param="angle", emb_after="carry", **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)
    assert _decreases(gen.losses, FAST["opt_steps"])
    embs = gen.embeddings()
    assert len(embs) == 4  # 2 guided steps + the 2 after them
    for e in embs.values():
        assert torch.allclose(e[:, 0] ** 2 + e[:, 1] ** 2, torch.ones_like(e[:, 0]), atol=1e-5)
    last_two = [embs[t] for t in sorted(embs)[:2]]  # timesteps descend: the smallest two come last
    assert torch.equal(last_two[0], last_two[1])
    restored = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), emb_param="angle", **FAST),
                     runtime=runtime, store=store)
    assert len(restored.embeddings()) == 2 and not np.array_equal(restored.frames, gen.frames)
    assert np.array_equal(inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=runtime, store=store).frames, gen.frames)


def test_inject_refuses_latent_runs(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", **FAST), runtime=runtime, store=store)
    with pytest.raises(IncompatibleArtifact):
        inject(gen.hash, InjectConfig(prompt="x"), runtime=runtime, store=store)
    with pytest.raises(IncompatibleArtifact):
        inject(amf.hash, InjectConfig(prompt="x"), runtime=runtime, store=store)


def test_cache_hit_loads_no_model(tiny_rope, ref_video, store, runtime, monkeypatch):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)

    def refuse(*a, **k):
        raise AssertionError("a model was loaded on a cache hit")

    monkeypatch.setattr(stages, "Backbone", refuse)
    assert extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store).hash == amf.hash
    assert guide(amf.hash[:8], cfg, runtime=runtime, store=store).hash == gen.hash


def test_settings_change_the_hash(tiny_rope, ref_video, store, runtime):
    a = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    b = extract(ref_video, extract_cfg(tiny_rope, temperature=3.0), runtime=runtime, store=store)
    assert a.hash != b.hash


def test_amf_artifact_round_trip(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    assert amf.grid == (3, 2, 3) and amf.blocks == [1]
    assert amf.amf(1).shape == (3, 3, 6, 2)
    assert amf.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert amf.latent().shape == (1, 3, 4, 4, 6)
    assert amf.features(1).shape[0] == 3
    flow = amf.amf(1)  # argmax displacements: whole patches, landing inside the 2x3 grid
    assert torch.equal(flow, flow.round())
    assert flow[..., 0].abs().max() <= 2 and flow[..., 1].abs().max() <= 1


def test_guide_checks_the_amf_matches(tiny_rope, tiny_sincos, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    with pytest.raises(IncompatibleArtifact):
        guide(amf.hash, GuideConfig(prompt="x", **FAST), model=tiny_sincos, runtime=runtime, store=store)
    with pytest.raises(IncompatibleArtifact):
        guide(amf.hash, GuideConfig(prompt="x", **FAST), height=64, runtime=runtime, store=store)
    with pytest.raises(InputError):
        guide(amf.hash, GuideConfig(prompt="x", steps=4, guidance_range=(50, 40)), runtime=runtime, store=store)


def test_bad_extract_inputs(tiny_rope, ref_video, tmp_path, store, runtime):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="cannot read video"):
        extract(bad, extract_cfg(tiny_rope), runtime=runtime, store=store)
    with pytest.raises(InputError, match="fewer than"):
        extract(ref_video, extract_cfg(tiny_rope).__class__(model=tiny_rope, frames=40, height=HEIGHT, width=WIDTH, blocks=(1,)),
                runtime=runtime, store=store)
    with pytest.raises(InputError, match="not divisible"):
        extract(ref_video, extract_cfg(tiny_rope).__class__(model=tiny_rope, frames=FRAMES, height=30, width=WIDTH, blocks=(1,)),
                runtime=runtime, store=store)
    with pytest.raises(InputError, match="out of range"):
        extract(ref_video, extract_cfg(tiny_rope).__class__(model=tiny_rope, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(7,)),
                runtime=runtime, store=store)
    assert store.hashes() == []


def test_interrupt_leaves_no_artifact(tiny_rope, ref_video, store, runtime, monkeypatch):
    from ditflow import artifacts

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_amf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    assert store.hashes() == [] and not any(store.tmp.iterdir())


def test_shipped_toy_model_extracts_the_bundled_reference(runtime, store):
    """`--model toy` is the trained model in assets/ with its measured defaults."""
    from pathlib import Path

    from ditflow.backbone import preset
    from ditflow.config import ExtractConfig
    from ditflow.stages import extract

    pre = preset("toy")
    assert (pre.frames, pre.height, pre.guidance_blocks, pre.negative_prompt) == (17, 64, (6, 7), "")
    assert pre.reference_flow == "soft" and pre.injection
    ref = Path(__file__).resolve().parents[1] / "assets" / "toy-reference.gif"
    amf = extract(ref, ExtractConfig(model="toy"), runtime=runtime, store=store)
    assert amf.grid == (5, 8, 8) and amf.blocks == [6, 7]


def test_toy_model_refuses_words_outside_its_world(runtime):
    """A toy model knows its world's words only: another word would be spelt into tokens it never saw."""
    import pytest

    from ditflow.backbone import Backbone
    from ditflow.errors import InputError

    backbone = Backbone("toy", "float32", runtime)
    assert backbone.encode_prompt("a red circle on a grey background").shape[1] == 16
    with pytest.raises(InputError, match="does not know the word\\(s\\) Red, hexagon"):
        backbone.encode_prompt("a Red hexagon on a grey background")


def test_other_models_take_any_word(tiny_rope, runtime):
    from ditflow.backbone import Backbone

    assert Backbone(str(tiny_rope), "float32", runtime).encode_prompt("a hexagon").shape[0] == 1
