"""End-to-end behaviour of extract / guide / inject on tiny random CogVideoX models (CPU)."""
import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, decreases_within_each_step, extract_cfg
from ditflow import stages
from ditflow.config import GuideConfig
from ditflow.errors import IncompatibleArtifact, InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One cache for the module (overrides conftest's): equal extractions are cache hits, so each tiny AMF is
    computed once. Tests that look at what a store holds take `fresh_store`."""
    return Store(tmp_path_factory.mktemp("stages-cache"))


@pytest.fixture
def fresh_store(tmp_path):
    return Store(tmp_path / "cache")


@pytest.mark.parametrize("scheduler,dynamic", [("ddim", False), ("dpm", True)])
def test_unguided_matches_diffusers_pipeline(tiny_rope, ref_video, store, runtime, scheduler, dynamic):
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=5, cfg=6.0, seed=3, family={"scheduler": scheduler, "dynamic_cfg": dynamic}),
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


@pytest.mark.slow
def test_unguided_run_with_defaults_is_the_folders_own_pipeline(tiny_rope, ref_video, store, runtime):
    """A folder without a preset or ditflow.json: its own scheduler, CFG and negative prompt, all defaults."""
    from diffusers import CogVideoXPipeline

    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", guidance=False, injection=False), runtime=runtime, store=store)
    pipe = CogVideoXPipeline.from_pretrained(tiny_rope)
    ref = pipe("a red circle", height=HEIGHT, width=WIDTH, num_frames=FRAMES, generator=torch.Generator().manual_seed(1),
               output_type="np", max_sequence_length=16).frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


@pytest.mark.parametrize("mode", ["latent", "emb"])
@pytest.mark.parametrize("loss", ["flow", "moft", "smm"])
def test_lossdecreases_within_each_step(tiny_rope, ref_video, store, runtime, mode, loss):
    amf = extract(ref_video, extract_cfg(tiny_rope, moft_fraction=0.25), runtime=runtime, store=store)
    lr = (0.2, 0.2) if mode == "latent" else (0.05, 0.05)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, loss=loss, lr=lr, **FAST),
                runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_confidence_weighted_flow_loss(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    conf = amf.confidence(amf.blocks[0])
    f, h, w = amf.grid
    assert conf.shape == (f, f, h * w) and bool(((conf >= 1 / (h * w) - 1e-3) & (conf <= 1)).all())
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), loss_weighting="confidence",
                                      **FAST), runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    plain = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST), runtime=runtime, store=store)
    assert [r["loss"] for r in plain.losses] != [r["loss"] for r in gen.losses]
    mutual = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), loss_weighting="mutual",
                                         **FAST), runtime=runtime, store=store)
    assert decreases_within_each_step(mutual.losses, FAST["opt_steps"])
    assert [r["loss"] for r in mutual.losses] != [r["loss"] for r in gen.losses]


def test_soft_reference_flow_is_stored_and_guides(tiny_rope, ref_video, store, runtime):
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    soft, hard = amf.soft_amf(1), amf.amf(1)
    assert soft.shape == hard.shape and not torch.equal(soft, soft.round())  # expected positions, not whole patches
    f, h, w = amf.grid
    assert soft[..., 0].abs().max() <= w - 1 and soft[..., 1].abs().max() <= h - 1
    cfg = dict(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST)
    gen = guide(amf.hash, GuideConfig(reference_flow="soft", **cfg), runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    paper = guide(amf.hash, GuideConfig(reference_flow="argmax", **cfg), runtime=runtime, store=store)
    assert paper.hash != gen.hash and [r["loss"] for r in paper.losses] != [r["loss"] for r in gen.losses]
    with pytest.raises(InputError, match="reference-flow"):
        GuideConfig(reference_flow="mean").validate()


def test_sincos_model_emb_mode(tiny_sincos, ref_video, store, runtime):
    """2B-like models optimise the sincos embedding (through a patch-embed hook) and can be replayed."""
    amf = extract(ref_video, extract_cfg(tiny_sincos), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
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


def test_emb_angles_stay_rotations_and_restore_after_the_range(tiny_rope, ref_video, store, runtime):
    """emb_param=angle keeps every table a rotation (cos² + sin² = 1); after the guidance range the model's own
    tables come back, so only the guided steps have embeddings, and inject replays them."""
    amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    cfg = GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), emb_param="angle", **FAST)
    gen = guide(amf.hash, cfg, runtime=runtime, store=store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    embs = gen.embeddings()
    assert len(embs) == 2  # the 2 guided steps only
    for e in embs.values():
        assert torch.allclose(e[:, 0] ** 2 + e[:, 1] ** 2, torch.ones_like(e[:, 0]), atol=1e-5)
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

    monkeypatch.setattr(stages, "load_backbone", refuse)
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


def test_bad_extract_inputs(tiny_rope, ref_video, tmp_path, fresh_store, runtime):
    store = fresh_store
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


def test_interrupt_leaves_no_artifact(tiny_rope, ref_video, fresh_store, runtime, monkeypatch):
    from ditflow import artifacts

    store = fresh_store
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_amf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    assert store.hashes() == [] and not any(store.tmp.iterdir())


def test_shipped_toy_model_extracts_the_bundled_reference(runtime, store):
    """`--model toy` is the trained model in assets/ with its measured defaults."""
    from pathlib import Path

    from ditflow.backbones import resolve_model
    from ditflow.config import ExtractConfig
    from ditflow.stages import extract

    pre = resolve_model("toy").preset
    assert (pre.frames, pre.height, pre.guidance_blocks, pre.negative_prompt) == (17, 64, (6, 7), "")
    assert pre.reference_flow == "soft" and pre.injection
    ref = Path(__file__).resolve().parents[1] / "assets" / "toy-reference.gif"
    amf = extract(ref, ExtractConfig(model="toy"), runtime=runtime, store=store)
    assert amf.grid == (5, 8, 8) and amf.blocks == [6, 7]


def test_shipped_toy_i2v_model_extracts_the_bundled_reference(runtime, store):
    """`--model toy-i2v` is the fine-tuned image-to-video toy in assets/, with the toy's own defaults."""
    from dataclasses import replace
    from pathlib import Path

    from ditflow.backbones import resolve_model
    from ditflow.config import ExtractConfig
    from ditflow.stages import extract

    i2v, t2v = resolve_model("toy-i2v"), resolve_model("toy")
    assert i2v.adapter.needs_image and not t2v.adapter.needs_image
    assert replace(i2v.preset, source="") == replace(t2v.preset, source="")  # the same measured defaults
    ref = Path(__file__).resolve().parents[1] / "assets" / "toy-reference.gif"
    amf = extract(ref, ExtractConfig(model="toy-i2v"), runtime=runtime, store=store)
    assert amf.grid == (5, 8, 8) and amf.blocks == [6, 7]


def test_toy_model_refuses_words_outside_its_world(runtime):
    """A toy model knows its world's words only: another word would be spelt into tokens it never saw."""
    import pytest

    from ditflow.backbones import load_backbone
    from ditflow.errors import InputError

    backbone = load_backbone("toy", "float32", runtime)
    plain = backbone.encode_prompt("a red circle on a grey background")
    assert plain.shape[1] == 16
    # case and punctuation are not words: the prompt is read as the model was trained on it
    assert backbone.encode_prompt("A red circle on a grey background.").equal(plain)
    with pytest.raises(InputError, match="does not know the word\\(s\\) hexagon in"):
        backbone.encode_prompt("a Red hexagon on a grey background")


def test_other_models_take_any_word(tiny_rope, runtime):
    from ditflow.backbones import load_backbone

    assert load_backbone(str(tiny_rope), "float32", runtime).encode_prompt("a hexagon").shape[0] == 1
