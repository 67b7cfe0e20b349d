"""CogVideoX image-to-video on tiny random pipelines of the real classes: 1.0-I2V as CogVideoX-5B-I2V (the image
latent on the channel axis, RoPE and a learned positional embedding for its one shape, 9 frames at 32x48) and
1.5-I2V as CogVideoX1.5-5B-I2V (temporal patches of 2, ofs, the inverted image scale). 1.5 runs at 17 frames:
5 latent frames padded to 6, 3 token frames (SMM needs more than 2)."""
import numpy as np
import pytest
import torch

from helpers import (HEIGHT, WIDTH, assert_only_later_frames_moved, decreases_within_each_step, moving_square,
                     one_error_line, run_cli, watch_latent_steps)
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
AXIS = 1  # latent frames: [B, F, C, h, w]
FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)
FRAMES = {"1.0-i2v": 9, "1.5-i2v": 17}
UNGUIDED = dict(prompt="a red circle", negative_prompt="bad quality", guidance=False, injection=False, steps=4,
                cfg=6.0, seed=3, family={"scheduler": "dpm", "dynamic_cfg": True})


@pytest.fixture(scope="module", params=list(FRAMES))
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def folder(variant, tmp_path_factory):
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline

    return str(build_tiny_cogvideox_i2v_pipeline(tmp_path_factory.mktemp(f"cog{variant}"), variant=variant))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("cog-i2v-cache"))


@pytest.fixture(scope="module")
def video(variant, ref_video, tmp_path_factory):
    """The reference: the 9-frame moving square, or a 17-frame one for 1.5."""
    from ditflow.video import write_video

    if FRAMES[variant] == 9:
        return ref_video
    return str(write_video(moving_square(frames=17, step=2), tmp_path_factory.mktemp("ref17") / "ref17.gif"))


@pytest.fixture(scope="module")
def amf(folder, variant, video, cache):
    cfg = ExtractConfig(model=folder, frames=FRAMES[variant], height=HEIGHT, width=WIDTH, blocks=(1,), moft_fraction=0.25)
    return extract(video, cfg, runtime=RUNTIME, store=cache)


def test_unguided_run_is_the_image_to_video_pipeline(folder, variant, amf, cache, picture):
    """Same image (fitted), prompt, seed, DPM with dynamic CFG: our run equals CogVideoXImageToVideoPipeline's
    within 2/255 (the image latent is sampled from the generator before the noise, in both)."""
    from diffusers import CogVideoXImageToVideoPipeline
    from PIL import Image

    from ditflow.image import load_image

    gen = guide(amf.hash, GuideConfig(**UNGUIDED), image=picture, runtime=RUNTIME, store=cache)
    pipe = CogVideoXImageToVideoPipeline.from_pretrained(folder)
    fitted = Image.fromarray(load_image(picture, HEIGHT, WIDTH).pixels)
    ref = pipe(fitted, "a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH,
               num_frames=FRAMES[variant], num_inference_steps=4, guidance_scale=6.0, use_dynamic_cfg=True,
               generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=16).frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES[variant], HEIGHT, WIDTH, 3)
    diff = np.abs(gen.frames.astype(int) - ref.astype(int)).max()
    print(f"{variant}: unguided max pixel difference {diff}")
    assert diff <= 2
    assert gen.inputs["image"] and gen.image.shape == (HEIGHT, WIDTH, 3)
    other = guide(amf.hash, GuideConfig(**{**UNGUIDED, "seed": 4}), image=picture, runtime=RUNTIME, store=cache)
    assert np.abs(other.frames.astype(int) - gen.frames.astype(int)).max() > 2  # the seed reaches noise and image


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step(amf, cache, picture, mode, lr):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), image=picture,
                runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_the_condition_never_receives_an_optimisation_step(amf, cache, picture, monkeypatch):
    """Latent-mode guidance optimises the noisy latent only: the condition the model sees is the same tensor,
    unchanged, in every forward, and no gradient reaches it; the guided latent has the VAE's channels."""
    from ditflow.backbones.cogvideox import CogVideoXBackbone
    from ditflow.backbones.cogvideox_i2v import CogVideoXI2VBackbone

    made, seen = [], []
    condition, forward = CogVideoXI2VBackbone.condition, CogVideoXI2VBackbone.forward
    plain = CogVideoXBackbone.forward

    def keep(self, *a, **kw):
        made.append(condition(self, *a, **kw))
        return made[-1]

    def watch(self, x, t, text, geo, positions=None, expert=None, cond=None):
        seen.append((cond, cond.clone(), cond.requires_grad, x.shape[2]))
        return forward(self, x, t, text, geo, positions, expert, cond)

    def inputs(self, x, t, text, geo, positions=None, expert=None, cond=None):
        assert cond is None and x.shape[2] == 8  # noise + image channels reach the transformer
        return plain(self, x, t, text, geo, positions, expert)

    monkeypatch.setattr(CogVideoXI2VBackbone, "condition", keep)
    monkeypatch.setattr(CogVideoXI2VBackbone, "forward", watch)
    monkeypatch.setattr(CogVideoXBackbone, "forward", inputs)
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), seed=7, **FAST),
                image=picture, runtime=RUNTIME, store=cache)
    assert len(gen.losses) == 2 * FAST["opt_steps"] and len(made) == 1  # guidance_range (4, 2): 2 guided steps
    assert all(c is made[0] and not grad and torch.equal(c, before) and ch == 4 for c, before, grad, ch in seen)
    assert gen.latent().shape[2] == 4  # the noisy latent's channels only


def test_latent_mode_never_moves_the_pictures_latent_frame(amf, cache, picture, monkeypatch):
    """Latent frame 0 stands for the image: Adam steps every other latent frame, never it."""
    steps = watch_latent_steps(monkeypatch)
    guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", lr=(0.2, 0.2), seed=8, **FAST),
          image=picture, runtime=RUNTIME, store=cache)
    assert_only_later_frames_moved(steps, AXIS)


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
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", loss=loss, lr=(0.2, 0.2), **{**FAST, "injection": True}),
                image=picture, runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_presets_and_folder_layouts():
    from ditflow.backbones import resolve_model
    from ditflow.backbones.cogvideox_i2v import CogVideoXI2VBackbone

    for name, hub, frames, size in [("cogvideox-5b-i2v", "THUDM/CogVideoX-5b-I2V", 49, (480, 720)),
                                    ("cogvideox1.5-5b-i2v", "THUDM/CogVideoX1.5-5B-I2V", 81, (768, 1360))]:
        spec = resolve_model(hub)
        assert spec.name == name and spec.adapter is CogVideoXI2VBackbone and spec.preset.source == hub
        p = spec.preset
        assert (p.frames, p.height, p.width, p.dtype, p.cfg, p.guidance_blocks) == (frames, *size, "bfloat16", 6.0, (20,))
        assert p.family == {"scheduler": "dpm", "dynamic_cfg": True}


def test_a_released_layout_gets_its_preset_and_another_the_pipelines_defaults(folder, variant, tmp_path):
    import json
    import shutil

    from ditflow.backbones import resolve_model

    plain = resolve_model(folder).preset  # the tiny model: the pipeline's defaults at its config's size
    assert (plain.dtype, plain.cfg, plain.family["dynamic_cfg"], plain.guidance_blocks) == ("float32", 6.0, False, (1,))
    assert (plain.height, plain.width, plain.frames) == (HEIGHT, WIDTH, 9 if variant == "1.0-i2v" else 49)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    cfg_file = copy / "transformer" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.update(num_layers=42, num_attention_heads=48, in_channels=32)
    cfg_file.write_text(json.dumps(cfg))
    got = resolve_model(str(copy)).preset
    assert got.frames == (49 if variant == "1.0-i2v" else 81) and got.dtype == "bfloat16" and got.source == str(copy)


def test_a_learned_embedding_at_another_shape_is_exit_2_before_loading(folder, variant, video, tmp_path, capsys,
                                                                        monkeypatch):
    if variant != "1.0-i2v":
        return  # 1.5 has no learned embedding: any size of its VAE and patch grid runs
    monkeypatch.setattr("ditflow.stages.load_backbone", lambda *a, **k: pytest.fail("a model was loaded"))
    for size in (["--frames", "5", "--height", str(HEIGHT), "--width", str(WIDTH)],
                 ["--frames", "9", "--height", str(HEIGHT), "--width", "64"]):
        code, out, err = run_cli(["extract", video, "--model", folder, *size, "--blocks", "1", "-q",
                                  "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 2 and "learned positional embedding for 9 frames at 32x48 only" in one_error_line(err)


@pytest.mark.parametrize("name,hub", [("cogvideox-5b-i2v", "THUDM/CogVideoX-5b-I2V"),
                                      ("cogvideox1.5-5b-i2v", "THUDM/CogVideoX1.5-5B-I2V")])
def test_named_preset_without_weights_is_one_line_exit_6(empty_hf_home, name, hub, tmp_path, monkeypatch, capsys, ref_video):
    code, out, err = run_cli(["extract", ref_video, "--model", name, "-q"], capsys, monkeypatch)
    assert code == 6 and f"hf download {hub}" in one_error_line(err)


def test_the_i2v_chain_runs_through_the_cli_and_a_batch_row(folder, variant, video, picture, tmp_path, monkeypatch,
                                                            capsys):
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    size = ["--model", folder, "--frames", str(FRAMES[variant]), "--height", str(HEIGHT), "--width", str(WIDTH),
            "--blocks", "1", "-q"]
    amf = call("extract", video, *size)
    gen = call("guide", "--amf", amf, "-p", "a red circle", "--image", picture, "--opt-mode", "emb", "--steps", "4",
               "--guidance-range", "4,3", "--lr", "0.05,0.05", "-q", "--out", str(tmp_path / "g.mp4"))
    new = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    assert len({amf, gen, new}) == 3 and (tmp_path / "g.mp4").is_file()
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup,image\n{video},a red circle,ditflow-emb,{picture}\n")
    call("batch", str(runs), *size, "--steps", "4", "--guidance-range", "4,3", "--lr", "0.05,0.05", "--metrics", "clip",
         "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text()


def test_no_image_is_refused_before_loading_and_a_t2v_model_names_the_i2v_presets(amf, cache, tiny_rope, no_model):
    from ditflow.backbones import resolve_model
    from ditflow.backbones.cogvideox_i2v import CogVideoXI2VBackbone
    from ditflow.errors import InputError

    assert resolve_model(amf.inputs["model_arg"]).run_adapter(True) is CogVideoXI2VBackbone
    with pytest.raises(InputError, match="is an image-to-video model .*: give --image FILE"):
        guide(amf.hash, GuideConfig(prompt="a red circle", **FAST), runtime=RUNTIME, store=cache)
    with pytest.raises(InputError, match="needs an image-to-video model .*cogvideox-5b-i2v, cogvideox1.5-5b-i2v"):
        resolve_model(tiny_rope).run_adapter(True)
