"""HunyuanVideo 1.5 text-to-video through its adapter, on a tiny random HunyuanVideo15Pipeline of the real classes
(Qwen2.5-VL text model and tokenizer, ByT5, the 16x VAE, the guider), and its presets and released configs."""
import json

import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, decreases_within_each_step, extract_cfg, one_error_line, run_cli
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)


@pytest.fixture(scope="session")
def tiny_hy(tmp_path_factory):
    from ditflow.tiny_hunyuan15 import build_tiny_hunyuan15_pipeline

    return str(build_tiny_hunyuan15_pipeline(tmp_path_factory.mktemp("tiny-hy15")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("hy15-cache"))


@pytest.fixture(scope="module")
def amf(tiny_hy, ref_video, cache):
    return extract(ref_video, extract_cfg(tiny_hy, moft_fraction=0.25), runtime=RUNTIME, store=cache)


def test_the_tiny_folder_is_small_and_resolves_to_the_adapter(tiny_hy):
    from pathlib import Path

    from ditflow.backbones import resolve_model
    from ditflow.backbones.hunyuan15 import HunyuanVideo15Backbone

    size = sum(f.stat().st_size for f in Path(tiny_hy).rglob("*") if f.is_file())
    assert size < 20e6
    spec = resolve_model(tiny_hy)
    assert spec.adapter is HunyuanVideo15Backbone
    preset = spec.preset  # the pipeline's own: its 16:9 bucket at target_size 48, 121 frames, its guider's CFG
    assert (preset.height, preset.width, preset.frames, preset.cfg, preset.negative_prompt) == (32, 48, 121, 6.0, "")


def test_unguided_run_is_the_pipeline_with_its_guider(tiny_hy, amf, cache):
    """Same prompt, seed and settings: HunyuanVideo15Pipeline (CFG 6 from its saved guider) within 2/255."""
    from diffusers import HunyuanVideo15Pipeline

    gen = guide(amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                      injection=False, steps=4, seed=3, cfg=6.0), runtime=RUNTIME, store=cache)
    pipe = HunyuanVideo15Pipeline.from_pretrained(tiny_hy)
    ref = pipe("a red circle", negative_prompt="bad quality", height=HEIGHT, width=WIDTH, num_frames=FRAMES,
               num_inference_steps=4, generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert np.abs(gen.frames.astype(int) - ref.astype(int)).max() <= 2


def test_our_processor_computes_the_stock_joint_attention(tiny_hy):
    """With a plain tap our processor gives the transformer's own output, and the taps see the video tokens' q/k."""
    from ditflow.backbones import load_backbone
    from ditflow.processors import QKRecorder

    backbone = load_backbone(tiny_hy, "float32", RUNTIME)
    geo = backbone.geometry(FRAMES, HEIGHT, WIDTH)
    x = torch.randn(1, 4, geo.latent_frames, geo.latent_height, geo.latent_width, generator=torch.Generator().manual_seed(0))
    text, t = backbone.encode_prompt("a red circle"), torch.tensor(500.0)
    with torch.no_grad():
        stock = backbone.forward(x, t, text, geo)
        rec = QKRecorder()
        with backbone.install({1: rec}):
            ours = backbone.forward(x, t, text, geo)
    assert torch.allclose(ours, stock, atol=1e-5)
    assert rec.q.shape == (2, 18, 16)  # [H, N video tokens, D]


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step_with_kv_injection(amf, cache, mode, lr):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **{**FAST, "injection": True}),
                runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    assert np.isfinite(gen.frames.astype(float)).all() and gen.frames.std() > 0


def test_emb_guide_then_inject_reproduces_it(amf, cache):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.5, 0.5), **FAST), runtime=RUNTIME,
                store=cache)
    embs = gen.embeddings()
    assert len(embs) == 2 and all(e.shape == (1, 18, 1, 8) for e in embs.values())  # angles [1, S, 1, D/2]
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=cache)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2
    assert torch.allclose(same.latent(), gen.latent(), atol=1e-4)
    plain = guide(amf.hash, GuideConfig(prompt="a red circle", guidance=False, **FAST), runtime=RUNTIME, store=cache)
    # the replayed angles matter, if little: a tiny random model's attention is nearly flat, whatever the positions
    assert (plain.latent() - gen.latent()).abs().max() > 1e-3


@pytest.mark.parametrize("loss", ["moft", "smm"])
def test_moft_and_smm(amf, cache, loss):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", loss=loss, lr=(0.2, 0.2), **FAST), runtime=RUNTIME, store=cache)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


@pytest.mark.parametrize("method", ["flowmotion", "ropecraft", "fastvmt"])
def test_the_peer_methods_run(amf, cache, method):
    gen = guide(amf.hash, GuideConfig(prompt="a red circle", method=method, steps=4, guidance_range=(4, 3), opt_steps=2),
                runtime=RUNTIME, store=cache)
    assert len(gen.losses) == 2 and all(np.isfinite(r["loss"]) for r in gen.losses)


def test_frames_must_be_4k_plus_1(tiny_hy, ref_video, cache, no_model):
    with pytest.raises(InputError, match=r"HunyuanVideo 1.5 takes 4k\+1 frames.*--frames 5 or 9"):
        extract(ref_video, ExtractConfig(model=tiny_hy, frames=8, height=HEIGHT, width=WIDTH, blocks=(1,)),
                runtime=RUNTIME, store=cache)


@pytest.mark.parametrize("argv,owner", [(["--scheduler", "dpm"], "CogVideoX"), (["--cfg-low-noise", "3"], "Wan")])
def test_other_families_settings_are_exit_2_before_loading(amf, cache, no_model, capsys, monkeypatch, argv, owner):
    code, out, err = run_cli(["guide", "--amf", amf.hash, "-p", "a red circle", *argv, "--cache", str(cache.root)],
                             capsys, monkeypatch)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(f"error: {argv[0]} is a {owner} setting; ")


@pytest.mark.parametrize("name", ["hunyuan1.5-480p", "hunyuan1.5-720p"])
def test_named_preset_without_weights_is_one_line_exit_6(empty_hf_home, name, ref_video, capsys, monkeypatch):
    from ditflow.backbones import PRESETS

    code, out, err = run_cli(["extract", ref_video, "--model", name, "-q"], capsys, monkeypatch)
    assert code == 6 and out == ""
    assert f"hf download {PRESETS[name].source}" in one_error_line(err)


def _config_folder(tmp_path, guider_scale, **transformer):
    (tmp_path / "transformer").mkdir(parents=True)
    (tmp_path / "guider").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "HunyuanVideo15Pipeline",
                                                           "guider": ["diffusers", "ClassifierFreeGuidance"]}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"num_layers": 54, "target_size": 960,
                                                                      "task_type": "t2v", **transformer}))
    (tmp_path / "guider" / "guider_config.json").write_text(json.dumps({"guidance_scale": guider_scale}))
    return tmp_path


def test_a_local_copy_of_a_release_gets_its_preset_with_its_own_cfg(tmp_path):
    """A 720p layout is hunyuan1.5-720p's defaults; a CFG-distilled copy's guider saves 1, and that is its CFG."""
    from ditflow.backbones import PRESETS, resolve_model

    preset = resolve_model(str(_config_folder(tmp_path, 1.0))).preset
    assert (preset.height, preset.width, preset.guidance_blocks) == (720, 1280, PRESETS["hunyuan1.5-720p"].guidance_blocks)
    assert preset.cfg == 1.0


def test_a_step_distilled_transformer_is_refused_before_loading(tmp_path, ref_video, no_model):
    folder = _config_folder(tmp_path, 1.0, use_meanflow=True)
    with pytest.raises(InputError, match="step-distilled"):
        extract(ref_video, ExtractConfig(model=str(folder), frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,)),
                runtime=RUNTIME, store=Store(tmp_path / "c"))


def test_the_released_configs_build_with_the_real_classes():
    """Every component's config of the four releases builds its class (fake tensors: no memory), and each matches
    the preset's layout and size."""
    import diffusers
    import transformers
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers.initialization import no_init_weights  # SigLIP's init draws a data-dependent truncated normal

    from ditflow.backbones import PRESETS
    from ditflow.backbones.hunyuan15_presets import LAYOUTS, bucket_for
    from ditflow.released.hunyuan15 import CONFIGS

    assert set(CONFIGS) == set(LAYOUTS.values())
    for name, parts in CONFIGS.items():
        cfg = parts["transformer"]
        assert LAYOUTS[(cfg["num_layers"], cfg["target_size"], cfg["task_type"])] == name
        with FakeTensorMode(), no_init_weights():
            for part, config in parts.items():
                if part in ("model_index", "scheduler", "guider", "feature_extractor"):  # no weights
                    continue
                if "_class_name" in config:
                    getattr(diffusers, config["_class_name"]).from_config(config)
                else:
                    cls = getattr(transformers, config["architectures"][0])
                    cls(transformers.AutoConfig.for_model(**config))
        size = (480, 848) if "480p" in name else (720, 1280)
        assert bucket_for(9, 16, cfg["target_size"], 16) == size == (PRESETS[name].height, PRESETS[name].width)


def test_the_chain_runs_through_the_cli_and_a_batch_row(tiny_hy, ref_video, tmp_path, monkeypatch, capsys, tiny_clip):
    """extract -> guide (latent, emb, --fast) -> inject -> eval -> batch -> report, as a user types it."""
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    from ditflow.eval.clip import load_clip

    ckpt = tmp_path / "clip.bin"  # random CLIP weights as a checkpoint file: eval reads no hub
    torch.save(load_clip(tiny_clip, None).model.state_dict(), ckpt)
    clip = ["--metrics", "clip", "--clip-model", tiny_clip, "--clip-pretrained", str(ckpt)]
    size = ["--model", tiny_hy, "--frames", "9", "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1", "-q"]
    amf = call("extract", ref_video, *size)
    steps = ["--steps", "4", "--guidance-range", "4,3", "--opt-steps", "2", "-q"]
    latent = call("guide", "--amf", amf, "-p", "a red circle", "--fast", *steps, "--out", str(tmp_path / "g.mp4"))
    emb = call("guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", "--lr", "0.05,0.05", *steps)
    new = call("inject", "--emb", emb, "-p", "a blue square", "-q")
    score = json.loads(call("eval", new, *clip, "--json", "-q"))
    assert len({amf, latent, emb, new}) == 4 and (tmp_path / "g.mp4").is_file() and np.isfinite(score["clip_score"])
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup\n{ref_video},a red circle,ditflow-emb\n")
    call("batch", str(runs), *size, "--steps", "4", "--guidance-range", "4,3", "--opt-steps", "2", "--lr", "0.05,0.05",
         "--metrics", "clip", "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text()
    call("report", str(tmp_path / "results.csv"), "--html", str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").is_file()
