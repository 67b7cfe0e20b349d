"""Wan image-to-video on tiny random pipelines of the real classes: Wan 2.1 I2V (36 input channels, a CLIP vision
tower whose states enter the cross-attention's image projections), Wan 2.2 I2V-A14B (two experts, boundary 0.9)
and TI2V-5B's image mode (frame 0 replaced by the image, timestep 0 on its tokens)."""
import numpy as np
import pytest
import torch

from helpers import (FRAMES, HEIGHT, assert_only_later_frames_moved, decreases_within_each_step, one_error_line, run_cli,
                     watch_latent_steps)
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
AXIS = 2  # latent frames: [B, C, F, h, w]
FAST = dict(steps=6, guidance_range=(6, 5), opt_steps=3, injection=False)  # step 0: on A14B's high-noise expert
WIDTH = {"2.1-i2v": 48, "2.2-i2v-a14b": 48, "2.2-ti2v-5b": 64}


@pytest.fixture(scope="module", params=list(WIDTH))
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def folder(variant, tmp_path_factory):
    from ditflow.tiny import build_tiny_wan_pipeline

    return str(build_tiny_wan_pipeline(tmp_path_factory.mktemp(f"wan{variant}"), variant=variant))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("wan-i2v-cache"))


@pytest.fixture(scope="module")
def amf(folder, variant, ref_video, cache):
    cfg = ExtractConfig(model=folder, frames=FRAMES, height=HEIGHT, width=WIDTH[variant], blocks=(1,), moft_fraction=0.25)
    return extract(ref_video, cfg, runtime=RUNTIME, store=cache)


def test_unguided_run_is_the_image_to_video_pipeline(folder, variant, amf, cache, picture):
    """Same image (fitted), prompt, seed: our run equals WanImageToVideoPipeline's within 2/255."""
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    from ditflow.image import load_image

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=4, seed=3, cfg=4.0), image=picture, runtime=RUNTIME, store=cache)
    pipe = WanImageToVideoPipeline.from_pretrained(folder)
    fitted = Image.fromarray(load_image(picture, HEIGHT, WIDTH[variant]).pixels)
    ref = pipe(fitted, "a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH[variant],
               num_frames=FRAMES, num_inference_steps=4, guidance_scale=4.0, generator=torch.Generator().manual_seed(3),
               output_type="np").frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH[variant], 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2
    assert gen.inputs["image"] and gen.image.shape == (HEIGHT, WIDTH[variant], 3)


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step(amf, cache, picture, mode, lr):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), image=picture,
                runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_the_condition_never_receives_an_optimisation_step(amf, variant, cache, picture, monkeypatch):
    """Latent-mode guidance optimises the noisy latent only: the condition the model sees is the same tensor,
    unchanged, in every forward, and no gradient reaches it."""
    from ditflow.backbones.wan_i2v import WanI2VBackbone

    made, seen = [], []
    condition, model_inputs = WanI2VBackbone.condition, WanI2VBackbone.model_inputs

    def keep(self, *a, **kw):
        made.append(condition(self, *a, **kw))
        return made[-1]

    def watch(self, x, t, geo, cond):
        seen.append((cond.latent, cond.latent.clone(), cond.latent.requires_grad))
        return model_inputs(self, x, t, geo, cond)

    monkeypatch.setattr(WanI2VBackbone, "condition", keep)
    monkeypatch.setattr(WanI2VBackbone, "model_inputs", watch)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), seed=7, **FAST),
                image=picture, runtime=RUNTIME, store=cache)
    assert len(gen.losses) == FAST["opt_steps"] and len(made) == 1
    assert all(t is made[0].latent and not grad and torch.equal(t, before) for t, before, grad in seen)
    assert gen.latent().shape[1] == (48 if variant == "2.2-ti2v-5b" else 16)  # the noisy latent's channels only


def test_latent_mode_never_moves_the_pictures_latent_frame(amf, cache, picture, monkeypatch):
    """Latent frame 0 stands for the image (TI2V-5B replaces it anyway): Adam steps every other frame, never it."""
    steps = watch_latent_steps(monkeypatch)
    guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), seed=8, **FAST),
          image=picture, runtime=RUNTIME, store=cache)
    assert_only_later_frames_moved(steps, AXIS)


def test_ti2v_frame_0_of_the_output_is_the_image(folder, variant, amf, cache, picture):
    if variant != "2.2-ti2v-5b":
        return  # the channel-conditioned models generate frame 0 (its closeness to the image is learnt)
    from ditflow.backbones import load_backbone
    from ditflow.image import load_image

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), **FAST), image=picture,
                runtime=RUNTIME, store=cache)
    backbone = load_backbone(folder, "float32", RUNTIME, image=True)
    geo = backbone.geometry(FRAMES, HEIGHT, WIDTH[variant])
    cond = backbone.condition(load_image(picture, HEIGHT, WIDTH[variant]).pixels, geo, None)
    assert torch.equal(gen.latent()[:, :, :1], cond.latent.float())


def test_emb_guide_then_inject_animates_the_same_image_by_default(amf, cache, picture, tmp_path):
    import cv2

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST), image=picture,
                runtime=RUNTIME, store=cache)
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=cache)
    assert same.inputs["image"] == gen.inputs["image"]
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), np.full((40, 60, 3), 90, np.uint8))
    new = inject(gen.hash, InjectConfig(prompt="a red circle"), image=other, runtime=RUNTIME, store=cache)
    assert new.inputs["image"] != gen.inputs["image"] and new.hash != same.hash


@pytest.mark.parametrize("loss", ["moft", "smm"])
def test_kv_injection_from_the_reference_conditioned_on_its_first_frame(amf, cache, picture, loss):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", loss=loss, lr=(0.05, 0.05), **{**FAST, "injection": True}),
                image=picture, runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_an_image_to_video_model_without_an_image_is_refused_before_loading(folder, variant, amf, cache, no_model):
    """TI2V-5B does both: without an image it is text-to-video, with one the I2V pipeline animates it."""
    from ditflow.backbones import resolve_model
    from ditflow.backbones.wan import WanBackbone
    from ditflow.backbones.wan_i2v import WanI2VBackbone

    spec = resolve_model(folder)
    assert spec.run_adapter(True) is WanI2VBackbone
    if variant == "2.2-ti2v-5b":
        assert spec.run_adapter(False) is WanBackbone
        return
    with pytest.raises(InputError, match="is an image-to-video model .*: give --image FILE"):
        guide(amf.hash, GuideConfig(prompt="a red circle", **FAST), runtime=RUNTIME, store=cache)


def test_image_on_a_text_to_video_model_is_exit_2_before_loading(tmp_path, ref_video, picture, capsys, monkeypatch):
    from ditflow.tiny import build_tiny_wan_pipeline

    t2v = build_tiny_wan_pipeline(tmp_path / "t2v")
    cache = ["--cache", str(tmp_path / "c")]
    code, out, err = run_cli(["extract", ref_video, "--model", str(t2v), "--frames", "9", "--height", str(HEIGHT),
                              "--width", "48", "--blocks", "1", "-q", *cache], capsys, monkeypatch)
    assert code == 0, err
    monkeypatch.setattr("ditflow.stages.load_backbone", lambda *a, **k: pytest.fail("a model was loaded"))
    code, out, err = run_cli(["guide", "--amf", out.strip(), "-p", "a red circle", "--image", picture, *cache], capsys,
                             monkeypatch)
    assert code == 2 and "is a text-to-video model" in one_error_line(err)


@pytest.mark.parametrize("name,hub", [("wan-i2v-14b-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"),
                                      ("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers")])
def test_named_preset_without_weights_is_one_line_exit_6(empty_hf_home, name, hub, tmp_path, monkeypatch, capsys, ref_video):
    code, out, err = run_cli(["extract", ref_video, "--model", name, "-q"], capsys, monkeypatch)
    assert code == 6 and f"hf download {hub}" in one_error_line(err)


def test_the_i2v_chain_runs_through_the_cli_and_a_batch_row(folder, variant, ref_video, picture, tmp_path, monkeypatch,
                                                            capsys):
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    size = ["--model", folder, "--frames", "9", "--height", str(HEIGHT), "--width", str(WIDTH[variant]), "--blocks", "1", "-q"]
    amf = call("extract", ref_video, *size)
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--image", picture, "--opt-mode", "emb", "--steps", "6",
               "--guidance-range", "6,5", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file()
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup,image\n{ref_video},a red circle,ditflow-emb,{picture}\n")
    call("batch", str(runs), *size, "--steps", "6", "--guidance-range", "6,5", "--lr", "0.05,0.05", "--metrics", "clip",
         "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text()
