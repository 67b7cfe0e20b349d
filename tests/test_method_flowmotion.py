"""FlowMotion (`--method flowmotion`): its pure math checked by hand, x̂₀ against each family's own scheduler step,
and guided runs on tiny random pipelines of the real classes (CogVideoX with DDIM, Wan 2.2 A14B's two experts,
CogVideoX 1.0-I2V with DPM) in which the transformer never runs with gradients enabled."""
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import FRAMES, HEIGHT, WIDTH, assert_only_later_frames_moved, cli, extract_cfg, one_error_line
from ditflow.backbones import load_backbone
from ditflow.backbones.loaded import keep_loaded
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.methods.common import flow_coordinates, noise_coefficients, x0_from
from ditflow.methods.flowmotion_guide import (FlowMotionGuide, difference_mse, flowmotion_loss, motion_differences,
                                              regulate, source_seed)
from ditflow.stages import extract, guide
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
# two guided steps of two Adam steps; on CogVideoX step 0 (t = 999, ᾱ = 0) x̂₀ does not depend on x_t: step 1 moves it
RUN = dict(method="flowmotion", prompt="a red circle", steps=4, guidance_range=(4, 2), opt_steps=2, lr=(0.2, 0.2))


# -------------------------------------------------------------------------------------------- the math by hand
@pytest.mark.parametrize("axis", [1, 2])
def test_d_stacks_consecutive_pairs_then_every_other_frame_of_each(axis):
    z = torch.tensor([0.0, 1.0, 3.0]).reshape([1, 1, 1, 1, 1][:axis] + [3] + [1] * (4 - axis))
    d = motion_differences(z, axis)
    assert d.shape == (4, 2, 1, 1, 1, 1)
    # consecutive |1-0|, |3-1|; frame 0: |0-1|, |0-3|; frame 1: |1-0|, |1-3|; frame 2: |3-0|, |3-1|
    assert d.flatten().tolist() == [1, 2, 1, 3, 1, 2, 3, 2]
    assert motion_differences(z.narrow(axis, 0, 1), axis).numel() == 0


@pytest.mark.parametrize("axis", [1, 2])
def test_difference_mse_is_the_mse_of_the_stacks(axis):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 3, 4, 2, 5, generator=g), torch.randn(1, 3, 4, 2, 5, generator=g)
    expected = F.mse_loss(motion_differences(a, axis), motion_differences(b, axis))
    assert torch.allclose(difference_mse(a, b, axis), expected, rtol=1e-5)
    assert difference_mse(a.narrow(axis, 0, 1), b.narrow(axis, 0, 1), axis) == 0


def test_the_loss_is_zero_for_identical_latents_and_adds_both_terms():
    z = torch.randn(1, 4, 3, 2, 2)
    assert flowmotion_loss(z, z.clone(), 1, 20.0, 5.0) == 0
    source, target = torch.zeros(1, 2, 1, 1, 1), torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1, 1)
    # α·mean(0², 1²) + β·mean of D's 3 entries |1 − 0|² = 20·0.5 + 5·1
    assert flowmotion_loss(source, target, 1, 20.0, 5.0).item() == pytest.approx(15.0)
    assert flowmotion_loss(source, target, 1, 0.0, 5.0).item() == pytest.approx(5.0)


def test_regulation_keeps_the_mean_direction_and_scales_the_rest():
    mean = torch.tensor([1.0, 0.0]).reshape(1, 2, 1)  # channels on dim 1
    v = torch.tensor([2.0, 3.0]).reshape(1, 2, 1)
    assert torch.allclose(regulate(v, mean, 0.1, 1).flatten(), torch.tensor([2.0, 0.3]))
    assert torch.allclose(regulate(v, mean, 1.0, 1), v)
    assert torch.allclose(regulate(3 * mean, mean, 0.1, 1), 3 * mean)
    assert torch.allclose(regulate(v, 2 * mean, 0.0, 1).flatten(), torch.tensor([2.0, 0.0]))


def test_the_source_noise_is_seeded_apart_from_the_runs_noise():
    assert source_seed(1) == source_seed(1) != source_seed(2)
    assert source_seed(1) not in (0, 1, 2) and 0 <= source_seed(1) < 2 ** 63


# -------------------------------------------------------------------------------------------- x̂₀ vs the schedulers
@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    from ditflow.tiny import build_tiny_wan_pipeline

    return str(build_tiny_wan_pipeline(tmp_path_factory.mktemp("fm-a14b"), variant="2.2-a14b"))


@pytest.fixture(scope="module")
def cog_i2v(tmp_path_factory):
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline

    return str(build_tiny_cogvideox_i2v_pipeline(tmp_path_factory.mktemp("fm-cog-i2v"), variant="1.0-i2v"))


def test_x0_is_the_ddim_and_dpm_schedulers_own_and_ddim_is_euler_in_flow_coordinates(tiny_rope, cog_i2v):
    """CogVideoX (v-prediction): x0_from equals the pred_original_sample DDIM's and DPM's step return for the same v;
    DDIM's step is the Euler step y' = y + (s' − s)·u of `flow_coordinates` (where the regulation's mean lives)."""
    g = torch.Generator().manual_seed(0)
    for folder, dpm in ((tiny_rope, False), (cog_i2v, True)):
        bb = load_backbone(folder, "float32", RUNTIME)
        assert type(bb.scheduler).__name__ == ("CogVideoXDPMScheduler" if dpm else "CogVideoXDDIMScheduler")
        ts = bb.timesteps(4)
        state = bb.sampler_state()
        x, v = torch.randn(1, 3, 4, 4, 6, generator=g), torch.randn(1, 3, 4, 4, 6, generator=g)
        for i, t in enumerate(ts):
            x_next, x0, state = bb.step(v, t, x, state)
            assert torch.allclose(x0_from(bb, x, v, t), x0, atol=1e-5)
            if dpm or i + 1 == len(ts):
                continue
            a, s = noise_coefficients(bb, t, x)
            assert (a, s) == pytest.approx((bb.scheduler.alphas_cumprod[int(t)].item() ** 0.5,
                                            (1 - bb.scheduler.alphas_cumprod[int(t)].item()) ** 0.5), abs=1e-6)
            a2, s2 = noise_coefficients(bb, ts[i + 1], x)
            y, st, u = flow_coordinates(x, x0, a, s)
            assert torch.allclose(x_next / (a2 + s2), y + (s2 / (a2 + s2) - st) * u, atol=1e-5)


def test_x0_from_the_flow_match_euler_step(a14b):
    """Wan (flow matching): x_next = x_t + (σ' − σ)·v, i.e. x̂₀ + σ'·(x_t − x̂₀)/σ with x̂₀ = x0_from; its
    flow coordinates are the identity."""
    bb = load_backbone(a14b, "float32", RUNTIME, keeps_latent=True)
    assert type(bb.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    ts = bb.timesteps(4)
    g = torch.Generator().manual_seed(1)
    x, v = torch.randn(1, 4, 3, 4, 6, generator=g), torch.randn(1, 4, 3, 4, 6, generator=g)
    for i, t in enumerate(ts):
        sigma, nxt = bb.scheduler.sigmas[i].item(), bb.scheduler.sigmas[i + 1].item()
        x_next = bb.scheduler.step(v, t, x, return_dict=False)[0]
        x0 = x0_from(bb, x, v, t)
        assert torch.allclose(x_next, x0 + nxt * (x - x0) / sigma, atol=1e-5)
        assert noise_coefficients(bb, t, x) == pytest.approx((1 - sigma, sigma), abs=1e-6)
        y, s, u = flow_coordinates(x, x0, 1 - sigma, sigma)
        assert torch.equal(y, x) and s == pytest.approx(sigma) and torch.allclose(u, v, atol=1e-4)


def test_on_flow_matching_the_regulation_is_the_peers(a14b):
    """Through the adapter, the running mean velocity is (x_t − x_T)/(σ_t − σ_T) and the regulated prediction is
    regulate(v, mean) itself: the rectified-flow coordinates are the identity there."""
    from types import SimpleNamespace

    bb = load_backbone(a14b, "float32", RUNTIME, keeps_latent=True)
    ts = bb.timesteps(4)
    g = torch.Generator().manual_seed(2)
    x_T, x, v = (torch.randn(1, 4, 3, 4, 6, generator=g) for _ in range(3))
    fm = object.__new__(FlowMotionGuide)
    fm.model, fm.gamma, fm.channels, fm.first, fm.initial = SimpleNamespace(backbone=bb), 0.1, 1, ts[0], x_T
    fm.denoise = lambda latent, i, t: v
    sigma, first = bb.scheduler.sigmas[2].item(), bb.scheduler.sigmas[0].item()
    mean = fm.mean_velocity(x, ts[2])
    assert torch.allclose(mean, (x - x_T) / (sigma - first), atol=1e-5)
    assert torch.allclose(fm.prediction(x, 2, ts[2], mean), regulate(v, mean, 0.1, 1), atol=1e-4)
    assert fm.mean_velocity(x, ts[0]) is None and torch.equal(fm.prediction(x, 0, ts[0], None), v)


# -------------------------------------------------------------------------------------------- guided runs
@contextmanager
def watched(folder: str):
    """Inside: the model stays loaded; every forward of every expert records (inside a guided step?, grad on?),
    and each guided step its latent before and after."""
    with keep_loaded(), pytest.MonkeyPatch.context() as mp:
        bb = load_backbone(folder, "float32", RUNTIME)
        seen = {"forwards": [], "steps": [], "inside": False}

        def hook(k):
            return lambda *_: seen["forwards"].append((seen["inside"], torch.is_grad_enabled(), k))

        hooks = [e.register_forward_pre_hook(hook(k)) for k, e in enumerate(bb.experts)]
        optimise = FlowMotionGuide._optimise

        def step(self, x, i, t):
            seen["inside"] = True
            out = optimise(self, x, i, t)
            seen["inside"] = False
            seen["steps"].append((x.detach().float().clone(), out.detach().float().clone()))
            return out

        mp.setattr(FlowMotionGuide, "_optimise", step)
        try:
            yield seen
        finally:
            for h in hooks:
                h.remove()


def check_forward_only(seen):
    """Every forward inside a guided step ran without grad, on the guided (first) expert."""
    inside = [(grad, k) for inside, grad, k in seen["forwards"] if inside]
    # per guided step: the reference's pass and one CFG prediction per Adam step (batched or two passes)
    assert len(inside) >= 2 * (1 + RUN["opt_steps"]) and inside == [(False, 0)] * len(inside)
    assert seen["steps"] and len(seen["steps"]) == 2


@pytest.fixture(scope="module")
def cog(tiny_rope, ref_video, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("fm-cog"))
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=RUNTIME, store=store)
    with watched(tiny_rope) as seen:
        gen = guide(amf.hash, GuideConfig(**RUN), runtime=RUNTIME, store=store)
    return amf, gen, seen, store


def test_a_guided_step_never_runs_the_transformer_with_grad_and_moves_the_latent(cog):
    amf, gen, seen, _ = cog
    check_forward_only(seen)
    (x0, y0), (x1, y1) = seen["steps"]
    assert torch.equal(x0, y0)  # t = 999: ᾱ = 0, x̂₀ = −v whatever x_t is, so no gradient
    assert not torch.equal(x1, y1)
    assert len(gen.losses) == 4 and [r["opt_step"] for r in gen.losses] == [0, 1, 0, 1]
    assert all(np.isfinite(r["loss"]) and r["fresh"] for r in gen.losses)
    assert len(gen.meta["seconds"]["guidance_steps"]) == 2
    assert gen.inputs["method"] == "flowmotion" and gen.inputs["method_settings"]["source_latent"] == "noised"
    assert gen.opt_mode == "latent"


def test_the_cli_run_is_reproducible_and_inject_refuses_it_in_one_line(cog, tiny_rope, ref_video, tmp_path):
    from ditflow import artifacts

    _, gen, _, _ = cog
    other = Store(tmp_path / "cache")  # a fresh cache: the run is computed again, from the same seed
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=RUNTIME, store=other)
    code, out, err = cli(["guide", "--amf", amf.hash, "--method", "flowmotion", "-p", "a red circle", "--steps", "4",
                          "--guidance-range", "4,2", "--opt-steps", "2", "--lr", "0.2,0.2", "--device", "cpu", "-q",
                          "--cache", str(other.root)])
    assert code == 0, err
    assert out.strip() == gen.hash
    assert torch.equal(artifacts.load(other, gen.hash, "gen").latent(), gen.latent())
    code, out, err = cli(["inject", "--emb", gen.hash, "-p", "a red circle", "-q", "--cache", str(other.root)])
    assert code != 0 and out == ""
    one_error_line(err, "--method flowmotion leaves nothing to replay")


def test_the_clean_variant_from_the_cli(cog):
    amf, gen, _, store = cog
    code, out, err = cli(["guide", "--amf", amf.hash, "--method", "flowmotion", "--source-latent", "clean",
                          "--gamma", "0", "--alpha", "1", "--beta", "2", "-p", "a red circle", "--steps", "4",
                          "--guidance-range", "4,2", "--opt-steps", "2", "--device", "cpu", "-q",
                          "--cache", str(store.root)])
    assert code == 0, err
    from ditflow import artifacts

    clean = artifacts.load(store, out.strip(), "gen")
    assert clean.inputs["method_settings"] == {"alpha": 1.0, "beta": 2.0, "gamma": 0.0,
                                               "source_latent": "clean"}
    assert clean.inputs["lr"] == [0.003, 0.003]  # the peer's
    assert clean.hash != gen.hash and np.isfinite(clean.frames.astype(float)).all()


def test_two_experts_run_forward_only_on_the_high_noise_one(a14b, ref_video, tmp_path):
    store = Store(tmp_path / "cache")
    amf = extract(ref_video, extract_cfg(a14b), runtime=RUNTIME, store=store)
    with watched(a14b) as seen:
        # 6 steps: A14B hands over after step 1 (boundary 0.875), so steps 0 and 1 are guided on the high-noise expert
        gen = guide(amf.hash, GuideConfig(**{**RUN, "steps": 6, "guidance_range": (6, 4)}), runtime=RUNTIME,
                    store=store)
    check_forward_only(seen)
    assert {k for *_, k in seen["forwards"]} == {0, 1}  # both experts hooked: the low-noise one ran after
    assert all(not torch.equal(x, y) for x, y in seen["steps"])  # flow matching: a = 1 from the first step
    assert len(gen.losses) == 4


def test_image_to_video_never_moves_the_pictures_latent_frame(cog_i2v, ref_video, picture, tmp_path):
    """CogVideoX 1.0-I2V (DPM, frames on axis 1): the reference's pass is conditioned on its own first frame, and
    every guided step leaves latent frame 0 as it was."""
    store = Store(tmp_path / "cache")
    amf = extract(ref_video, ExtractConfig(model=cog_i2v, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,)),
                  runtime=RUNTIME, store=store)
    conds = []
    with watched(cog_i2v) as seen, pytest.MonkeyPatch.context() as mp:
        original = FlowMotionGuide.source

        def source(self, t):
            conds.append((self.ref_cond, self.model.cond))
            return original(self, t)

        mp.setattr(FlowMotionGuide, "source", source)
        guide(amf.hash, GuideConfig(**{**RUN, "guidance_range": (3, 1)}), image=picture, runtime=RUNTIME, store=store)
    check_forward_only(seen)
    (ref, run), (ref2, _) = conds
    assert ref is ref2 and not torch.equal(ref, run)  # computed once: the reference's frame, not the run's picture
    assert_only_later_frames_moved(seen["steps"], 1)
