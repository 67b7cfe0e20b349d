"""HunyuanVideo 1.5 image-to-video on a tiny random HunyuanVideo15ImageToVideoPipeline of the real classes: the
picture's latent on frame 0 of the condition channels (mask 1 there) and its SigLIP states in the text stream."""
import numpy as np
import pytest
import torch

from helpers import (FRAMES, HEIGHT, WIDTH, assert_only_later_frames_moved, decreases_within_each_step, extract_cfg,
                     one_error_line, run_cli, watch_latent_steps)
from ditflow.config import GuideConfig, RuntimeOptions
from ditflow.errors import InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from ditflow.tiny_hunyuan15 import build_tiny_hunyuan15_pipeline

    return str(build_tiny_hunyuan15_pipeline(tmp_path_factory.mktemp("tiny-hy15-i2v"), i2v=True))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("hy15-i2v-cache"))


@pytest.fixture(scope="module")
def amf(folder, ref_video, cache):
    return extract(ref_video, extract_cfg(folder, moft_fraction=0.25), runtime=RUNTIME, store=cache)


def test_unguided_run_is_the_image_to_video_pipeline(folder, amf, cache, picture):
    """The fitted picture (32x48: the pipeline's own bucket for its aspect at target_size 48), prompt and seed:
    our run equals HunyuanVideo15ImageToVideoPipeline's within 2/255."""
    from diffusers import HunyuanVideo15ImageToVideoPipeline
    from PIL import Image

    from ditflow.image import load_image

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=4, seed=3, cfg=6.0), image=picture, runtime=RUNTIME, store=cache)
    pipe = HunyuanVideo15ImageToVideoPipeline.from_pretrained(folder)
    fitted = Image.fromarray(load_image(picture, HEIGHT, WIDTH).pixels)
    ref = pipe(fitted, "a red circle", negative_prompt="bad quality", num_frames=FRAMES, num_inference_steps=4,
               generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2
    assert gen.inputs["image"] and gen.image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step_with_kv_injection(amf, cache, picture, mode, lr):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **{**FAST, "injection": True}),
                image=picture, runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_latent_mode_never_moves_the_pictures_latent_frame(amf, cache, picture, monkeypatch):
    """Latent frame 0 stands for the picture: Adam steps every later frame, never it."""
    steps = watch_latent_steps(monkeypatch)
    guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), seed=8, **FAST),
          image=picture, runtime=RUNTIME, store=cache)
    assert_only_later_frames_moved(steps, 2)


def test_emb_guide_then_inject_animates_the_same_image_by_default(amf, cache, picture):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST), image=picture,
                runtime=RUNTIME, store=cache)
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=cache)
    assert same.inputs["image"] == gen.inputs["image"]
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2


def test_fastvmt_runs_on_an_image(amf, cache, picture):
    """FastVMT keeps the picture's latent frame as it is (the other methods' I2V paths share the T2V tests' code)."""
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", method="fastvmt", steps=4, guidance_range=(4, 3), opt_steps=2),
                image=picture, runtime=RUNTIME, store=cache)
    assert len(gen.losses) == 2 and all(np.isfinite(r["loss"]) for r in gen.losses)


def test_without_an_image_it_is_refused_before_loading(folder, amf, cache, no_model):
    from ditflow.backbones import resolve_model
    from ditflow.backbones.hunyuan15_i2v import HunyuanVideo15I2VBackbone

    assert resolve_model(folder).run_adapter(True) is HunyuanVideo15I2VBackbone
    with pytest.raises(InputError, match="is an image-to-video model .*: give --image FILE"):
        guide(amf.hash, GuideConfig(prompt="a red circle", **FAST), runtime=RUNTIME, store=cache)


@pytest.mark.parametrize("name", ["hunyuan1.5-i2v-480p", "hunyuan1.5-i2v-720p"])
def test_named_preset_without_weights_is_one_line_exit_6(empty_hf_home, name, ref_video, capsys, monkeypatch):
    code, out, err = run_cli(["extract", ref_video, "--model", name, "-q"], capsys, monkeypatch)
    hub = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-" + name.split("-")[-1] + "_i2v"
    assert code == 6 and f"hf download {hub}" in one_error_line(err)


def test_the_i2v_chain_runs_through_the_cli_and_a_batch_row(folder, ref_video, picture, tmp_path, monkeypatch, capsys):
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    size = ["--model", folder, "--frames", "9", "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1", "-q"]
    amf = call("extract", ref_video, *size)
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--image", picture, "--opt-mode", "emb", "--steps", "4",
               "--guidance-range", "4,3", "--opt-steps", "2", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file()
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup,image\n{ref_video},a red circle,ditflow-latent,{picture}\n")
    call("batch", str(runs), *size, "--steps", "4", "--guidance-range", "4,3", "--opt-steps", "2", "--metrics", "clip",
         "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text()
