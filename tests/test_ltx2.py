"""LTX-2 text-to-video through its backbone adapter, on a tiny random LTX2Pipeline (real diffusers classes)."""
import numpy as np
import pytest
import torch

from helpers import decreases_within_each_step, moving_square
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError, ModelUnavailable
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

FRAMES, HEIGHT, WIDTH = 9, 32, 64  # LTX2Pipeline takes multiples of 32; the tiny VAE (8x, 4x): a 3 x 4 x 8 latent
FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)
RUNTIME = RuntimeOptions(device="cpu", quiet=True)


@pytest.fixture(scope="session")
def ltx2_video(tmp_path_factory):
    from ditflow.video import write_video

    return str(write_video(moving_square(FRAMES, HEIGHT, WIDTH), tmp_path_factory.mktemp("ltx2-video") / "ref.gif"))


@pytest.fixture(scope="module")
def ltx2_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("ltx2-cache"))


@pytest.fixture(scope="module")
def ltx2_amf(tiny_ltx2, ltx2_video, ltx2_store):
    cfg = ExtractConfig(model=tiny_ltx2, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,), moft_fraction=0.25)
    return extract(ltx2_video, cfg, runtime=RUNTIME, store=ltx2_store)


def pipeline_frames(pipe_cls, folder, prompt, **kw):
    """The diffusers pipeline's own output on the folder, as uint8 frames."""
    pipe = pipe_cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt, negative_prompt="bad quality", height=HEIGHT, width=WIDTH, num_frames=FRAMES,
               num_inference_steps=4, guidance_scale=3.0, max_sequence_length=32,
               generator=torch.Generator().manual_seed(3), output_type="np", **kw).frames[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_unguided_run_is_ltx2_pipeline(tiny_ltx2, ltx2_amf, ltx2_store):
    """CFG 3, audio CFG 7, modality guidance 3 and rescale 0.7 (the pipeline's defaults), its sigmas and audio."""
    from diffusers import LTX2Pipeline

    gen = guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                           injection=False, steps=4, seed=3, cfg=3.0), runtime=RUNTIME, store=ltx2_store)
    ref = pipeline_frames(LTX2Pipeline, tiny_ltx2, "a red circle")
    assert gen.frames.shape == ref.shape == (FRAMES, HEIGHT, WIDTH, 3) and ref.std() > 0
    diff = np.abs(gen.frames.astype(int) - ref.astype(int)).max()
    print(f"max pixel difference vs LTX2Pipeline: {diff}")
    assert diff <= 2


def test_extract_records_only_video_tokens(ltx2_amf):
    assert ltx2_amf.grid == (3, 4, 8) and ltx2_amf.blocks == [1]
    assert ltx2_amf.amf(1).shape == (3, 3, 32, 2)  # [F, F, h*w, 2]


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_within_a_guidance_step(ltx2_amf, ltx2_store, mode, lr):
    gen = guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), runtime=RUNTIME,
                store=ltx2_store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    assert np.isfinite(gen.frames.astype(float)).all() and gen.frames.std() > 0


def test_emb_guide_then_inject_reproduces_it(ltx2_amf, ltx2_store):
    gen = guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST),
                runtime=RUNTIME, store=ltx2_store)
    embs = gen.embeddings()
    assert len(embs) == 2 and all(e.shape == (1, 96, 2, 4) for e in embs.values())  # split angles [1, S, H, D/2]
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=ltx2_store)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2


@pytest.mark.parametrize("kw", [dict(method="flowmotion"), dict(method="ropecraft", method_settings={"flow": "dis"}),
                                dict(method="fastvmt"), dict(fast=True)], ids=["flowmotion", "ropecraft", "fastvmt", "fast"])
def test_every_method_runs_on_ltx2(ltx2_amf, ltx2_store, kw):
    gen = guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", steps=4, guidance_range=(4, 3), **kw), runtime=RUNTIME,
                store=ltx2_store)
    assert gen.losses and all(np.isfinite(r["loss"]) for r in gen.losses) and gen.frames.std() > 0


@pytest.mark.parametrize("loss", ["moft", "smm"])
def test_kv_injection_with_moft_and_smm(ltx2_amf, ltx2_store, loss):
    gen = guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", opt_mode="latent", loss=loss, lr=(0.05, 0.05),
                                           **{**FAST, "injection": True}), runtime=RUNTIME, store=ltx2_store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])


def test_ltx2_sizes_are_checked_before_loading(tiny_ltx2, ltx2_video, ltx2_store, no_model):
    with pytest.raises(InputError, match=r"LTX-2 takes 4k\+1 frames.*--frames 5 or 9"):
        extract(ltx2_video, ExtractConfig(model=tiny_ltx2, frames=8, height=HEIGHT, width=WIDTH, blocks=(1,)),
                runtime=RUNTIME, store=ltx2_store)
    with pytest.raises(InputError, match="multiples of 32"):
        extract(ltx2_video, ExtractConfig(model=tiny_ltx2, frames=9, height=48, width=WIDTH, blocks=(1,)),
                runtime=RUNTIME, store=ltx2_store)


@pytest.mark.parametrize("family", [{"cfg_low_noise": 3.0}, {"dynamic_cfg": True}])
def test_other_families_settings_are_refused_before_loading(ltx2_amf, ltx2_store, family, no_model):
    with pytest.raises(InputError, match=r"is a (Wan|CogVideoX) setting; .* is a LTX-2 model$"):
        guide(ltx2_amf.hash, GuideConfig(prompt="a red circle", family=family, guidance=False, steps=2, cfg=1.0),
              runtime=RUNTIME, store=ltx2_store)


def test_ltx2_settings_on_another_family_exit_2(amf_cache, no_model, tmp_path, capsys, monkeypatch):
    """An LTX-2 setting (here from a config file) on a CogVideoX model: one `error:` line, exit 2, before loading."""
    from helpers import run_cli

    cache, amf = amf_cache
    config = tmp_path / "run.toml"
    config.write_text("[guide]\naudio_cfg = 5.0\n")
    code, out, err = run_cli(["guide", "--amf", amf, "-p", "a red circle", "--config", str(config), "--cache",
                              str(cache)], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: --audio-cfg is a LTX-2 setting")


@pytest.mark.parametrize("name,hub", [("ltx2", "Lightricks/LTX-2"), ("ltx2-i2v", "Lightricks/LTX-2")])
def test_presets_without_weights_are_one_line_exit_6(empty_hf_home, ltx2_video, name, hub, capsys, monkeypatch):
    from helpers import run_cli

    code, out, err = run_cli(["extract", ltx2_video, "--model", name, "-q"], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 6 and out == "" and len(lines) == 1 and lines[0].startswith("error:")
    assert hub in lines[0] and "hf download" in lines[0]


def test_presets_and_aliases():
    from ditflow.backbones import ALIASES, PRESETS

    assert PRESETS["ltx2"].source == PRESETS["ltx2-i2v"].source == "Lightricks/LTX-2"
    assert ALIASES["Lightricks/LTX-2"] == "ltx2" and PRESETS["ltx2"].frames == 121


def test_missing_weights_raise_model_unavailable(empty_hf_home, tmp_path, ltx2_video):
    with pytest.raises(ModelUnavailable, match="hf download Lightricks/LTX-2"):
        extract(ltx2_video, ExtractConfig(model="ltx2"), runtime=RUNTIME, store=Store(tmp_path / "cache"))


def test_the_whole_chain_runs_through_the_cli(tiny_ltx2, ltx2_video, tmp_path, monkeypatch, capsys):
    """extract -> guide latent -> guide emb -> inject -> eval -> a batch row, as a user types them."""
    from helpers import run_cli

    def call(*argv, code=0):
        got, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert got == code, err
        return out.strip()

    size = ["--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH)]
    amf = call("extract", ltx2_video, "--model", tiny_ltx2, *size, "--blocks", "1", "-q")
    common = ["-p", "a red circle", "--steps", "4", "--guidance-range", "4,3", "--opt-steps", "2", "-q"]
    lat = call("guide", "--amf", amf, *common, "--lr", "0.2,0.2", "--out", str(tmp_path / "g.mp4"))
    emb = call("guide", "--amf", amf, *common, "--opt-mode", "emb", "--lr", "0.05,0.05")
    new = call("inject", "--emb", emb, "-p", "a blue square", "-q")
    scores = call("eval", new, "--metrics", "mf", "--tracker", "lk", "--json")
    assert "motion_fidelity" in scores
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup\n{ltx2_video},a red circle,ditflow-latent\n")
    call("batch", str(runs), "--model", tiny_ltx2, *size, "--blocks", "1", "--steps", "4", "--guidance-range", "4,3",
         "--lr", "0.2,0.2", "--metrics", "clip", "--csv", str(tmp_path / "results.csv"), "-q")
    assert ",ok," in (tmp_path / "results.csv").read_text()
    assert len({amf, lat, emb, new}) == 4 and (tmp_path / "g.mp4").is_file()


def test_the_connectors_leave_the_accelerator_with_the_text_encoder(tiny_ltx2, monkeypatch):
    """Both text parts go to the CPU after encoding and come back for the next prompt (`to` recorded, not run)."""
    from ditflow.backbones import load_backbone

    backbone = load_backbone(tiny_ltx2, "float32", RUNTIME)
    moves = []
    for name in ("text_encoder", "connectors"):
        monkeypatch.setattr(backbone.pipe.components[name], "to", lambda device, name=name: moves.append((name, str(device))))
    backbone.device = torch.device("cuda")  # what a GPU run holds
    assert backbone.release_text_encoder() is True
    backbone._text_encoder_ready()
    assert moves == [("text_encoder", "cpu"), ("connectors", "cpu"), ("text_encoder", "cuda"), ("connectors", "cuda")]
