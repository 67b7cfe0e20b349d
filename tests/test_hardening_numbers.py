"""Issue 42, numbers: a generation, injection or extraction that turns NaN stops with one `error:` line and
publishes nothing (it would decode to black frames cached as a success); settings without a sane meaning when
huge have finite upper bounds, stated in their help and checked before any model loads; --image-fit is checked
as it is parsed, with or without an image."""
from __future__ import annotations

import math
import re
import shutil
import typing
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import extract_cfg, one_error_line, run_cli, tree
from ditflow.checks import check_rules
from ditflow.config import ExtractConfig, GuideConfig, InjectConfig, RuntimeOptions
from ditflow.errors import InputError, NonFiniteResult
from ditflow.store import Store

QUICK = ["--steps", "2", "--guidance-range", "2,1", "--opt-steps", "1", "-q"]
NAN_WORD = "leopard"  # a word of the tiny models' vocabulary whose text embedding is made NaN


# -- models that turn NaN, made from a copy of the tiny model ---------------------------------------------------
def poisoned_copy(src: str, dest: Path, file: str, keys: tuple[str, ...], rows: list[int] | None = None) -> str:
    """A copy of model folder `src` whose tensors `keys` in `file` are NaN (only `rows` of them, when given)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    path = dest / file
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    for key in keys:
        tensors[key][rows if rows is not None else slice(None)] = float("nan")
    save_file(tensors, path, metadata=metadata)
    return str(dest)


def amf_of(model: str, video: str, cache: Path) -> str:
    from ditflow.stages import extract

    return extract(video, extract_cfg(model), runtime=RuntimeOptions(device="cpu", quiet=True), store=Store(cache)).hash


@pytest.fixture(scope="module")
def nan_word_model(tiny_rope, tmp_path_factory):
    """The tiny model, except that NAN_WORD's text embedding is NaN: any prompt holding it diverges."""
    from ditflow.tiny import build_tokenizer

    token = build_tokenizer().convert_tokens_to_ids("▁" + NAN_WORD)
    return poisoned_copy(tiny_rope, tmp_path_factory.mktemp("nan-word") / "model", "text_encoder/model.safetensors",
                         ("shared.weight",), [token])


@pytest.fixture(scope="module")
def nan_word_amf(nan_word_model, ref_video, tmp_path_factory):
    """(cache, AMF hash) of the NaN-word model, extracted with no prompt (so finite)."""
    cache = tmp_path_factory.mktemp("nan-word-cache")
    return cache, amf_of(nan_word_model, ref_video, cache)


@pytest.fixture(scope="module")
def nan_decoder_amf(tiny_rope, ref_video, tmp_path_factory):
    """(cache, AMF hash) of a tiny model whose VAE decoder outputs NaN: every latent is finite, every video NaN."""
    model = poisoned_copy(tiny_rope, tmp_path_factory.mktemp("nan-vae") / "model",
                          "vae/diffusion_pytorch_model.safetensors", ("decoder.conv_out.conv.weight",))
    cache = tmp_path_factory.mktemp("nan-vae-cache")
    return cache, amf_of(model, ref_video, cache)


def assert_failed_without_publishing(code, out: str, err: str, cache: Path, before: dict, text: str) -> None:
    """Exit 1 (a stage failed), one `error:` line naming what turned NaN, and the cache as it was before: nothing
    published, so a rerun computes again instead of serving a cache hit."""
    assert code == NonFiniteResult.exit_code == 1, err
    assert "NaN" in one_error_line(err, text) and out == ""
    assert tree(cache) == before


# -- (1a) non-finite results stop the stage ----------------------------------------------------------------------
def test_guide_whose_latent_turns_nan_fails_and_publishes_nothing(nan_word_amf, capsys, monkeypatch):
    cache, amf = nan_word_amf
    before = tree(cache)
    code, out, err = run_cli(["guide", "--amf", amf, "-p", f"a {NAN_WORD}", *QUICK, "--cache", str(cache)], capsys,
                             monkeypatch)
    assert_failed_without_publishing(code, out, err, cache, before, "the latent after denoising step 1 of 2")


def test_inject_whose_latent_turns_nan_fails_and_publishes_nothing(nan_word_amf, capsys, monkeypatch):
    cache, amf = nan_word_amf
    code, out, _ = run_cli(["guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", *QUICK, "--cache",
                            str(cache)], capsys, monkeypatch)
    assert code == 0
    before = tree(cache)
    code, out, err = run_cli(["inject", "--emb", out.strip(), "-p", f"a {NAN_WORD}", "-q", "--cache", str(cache)],
                             capsys, monkeypatch)
    assert_failed_without_publishing(code, out, err, cache, before, "the latent after denoising step 1 of 2")


def test_guide_whose_decoded_video_is_nan_fails_and_publishes_nothing(nan_decoder_amf, capsys, monkeypatch):
    cache, amf = nan_decoder_amf
    before = tree(cache)
    code, out, err = run_cli(["guide", "--amf", amf, "-p", "a red circle", "--no-guidance", *QUICK, "--cache",
                              str(cache)], capsys, monkeypatch)
    assert_failed_without_publishing(code, out, err, cache, before, "the decoded video")


def test_extract_whose_amf_is_nan_fails_and_publishes_nothing(nan_word_model, ref_video, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "c"
    Store(cache).check_writable()  # the cache's own files exist before the run: only the AMF could be new
    before = tree(cache)
    config = tmp_path / "run.toml"
    config.write_text(f'[extract]\nsource_prompt = "{NAN_WORD}"\n')  # the text the reference is encoded with
    argv = ["extract", ref_video, "--model", nan_word_model, "--frames", "9", "--height", "32", "--width", "48",
            "--blocks", "1", "--config", str(config), "-q", "--cache", str(cache)]
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert_failed_without_publishing(code, out, err, cache, before, "the reference's latent and AMF")


def test_sampling_stops_at_the_first_step_that_is_not_finite():
    from ditflow.sampling import sample

    def step(v, t, x, state):  # the third step overflows
        return (x * math.inf if t == 3 else x - 0.1), None, state

    backbone = SimpleNamespace(step=step, sampler_state=lambda: None)
    seen = []
    with pytest.raises(NonFiniteResult, match="after denoising step 3 of 5"):
        sample(lambda x, i, t, positions: x, torch.ones(2), [1, 2, 3, 4, 5], backbone,
               callback=lambda **kw: seen.append(kw["i"]))
    assert seen == [0, 1]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_decoded_frames_that_are_not_finite_are_refused(bad):
    from ditflow.finite import to_uint8

    frames = np.full((2, 4, 4, 3), 0.5, np.float32)
    assert to_uint8(frames).max() == 128  # a finite video converts as before
    frames[1, 2, 3, 0] = bad
    with pytest.raises(NonFiniteResult, match="the decoded video"):
        to_uint8(frames)


# -- (1b, 2) bounds, checked before any model loads ----------------------------------------------------------------
@pytest.mark.parametrize("argv, flag", [
    (["--cfg", "1e308"], "--cfg"), (["--cfg", "101"], "--cfg"), (["--cfg", "nan"], "--cfg"),
    (["--lr", "1e308,1e308"], "--lr"), (["--lr", "inf,1"], "--lr"), (["--lr", "0.1,2"], "--lr"),
    (["--steps", "1001"], "--steps"), (["--guidance-range", "99999999999,2"], "--guidance-range"),
    (["--steps", "50", "--guidance-range", "1001,2"], "--guidance-range"),
])
def test_guide_refuses_absurd_numbers_before_loading(argv, flag, amf_cache, no_model, capsys, monkeypatch):
    cache, amf = amf_cache
    before = tree(cache)
    code, out, err = run_cli(["guide", "--amf", amf, "-p", "a red circle", *argv, "--cache", str(cache)], capsys,
                             monkeypatch)
    assert code == 2 and flag in one_error_line(err) and out == ""
    assert tree(cache) == before


@pytest.mark.parametrize("value", ["1e308", "101"])
def test_inject_refuses_an_absurd_cfg_before_reading_anything(value, tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["inject", "--emb", "abcdef", "-p", "a red circle", "--cfg", value, "--cache",
                              str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 2 and "--cfg must be >= 1 and <= 100" in one_error_line(err) and out == ""


@pytest.mark.parametrize("value", ["1e308", "101"])
def test_extract_refuses_an_absurd_temperature(value, tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    argv = ["extract", ref_video, "--model", tiny_rope, "--frames", "9", "--height", "32", "--width", "48",
            "--temperature", value, "--cache", str(tmp_path / "c")]
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and "--temperature must be > 0 and <= 100" in one_error_line(err) and out == ""
    assert tree(tmp_path / "c") == {}


def test_cfg_low_noise_is_bounded_as_cfg():
    from ditflow.backbones.wan_presets import WanSettings

    check_rules(WanSettings(cfg_low_noise=100.0))
    with pytest.raises(InputError, match="--cfg-low-noise must be >= 1 and <= 100"):
        check_rules(WanSettings(cfg_low_noise=1e308))


def _holds_float(tp) -> bool:
    return tp is float or any(_holds_float(a) for a in typing.get_args(tp))


def test_every_float_setting_has_an_upper_bound_its_help_states():
    from ditflow.backbones import family_settings

    classes = {ExtractConfig, GuideConfig, InjectConfig, RuntimeOptions, *(a.settings for a in family_settings().values())}
    checked = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if _holds_float(hints[f.name]):
                le = f.metadata["rule"].get("le")
                assert le is not None and re.search(rf"(at most|to) {le}\b", f.metadata["help"]), f.name
                checked.append(f.name)
    assert {"cfg", "lr", "temperature", "moft_fraction", "cfg_low_noise"} <= set(checked)


def test_learning_rate_of_a_huge_guidance_range_allocates_nothing():
    from ditflow.guides import lr_at

    lr, span = (0.02, 0.01), (10**12, 0)
    assert lr_at(lr, span, 0) == 0.02 and lr_at(lr, span, 10**12 + 5) == 0.01
    assert lr_at(lr, (4, 2), 1) == float(np.linspace(0.02, 0.01, 3)[1])  # the same numbers as the array gave


# -- (3) --image-fit ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["guide", "inject"])
def test_image_fit_is_checked_without_an_image(command, amf_cache, no_model, capsys, monkeypatch):
    cache, amf = amf_cache
    ref = ["--amf", amf] if command == "guide" else ["--emb", "abcdef"]
    code, out, err = run_cli([command, *ref, "-p", "a red circle", "--image-fit", "bogus", "--cache", str(cache)],
                             capsys, monkeypatch)
    line = one_error_line(err, "--image-fit")
    assert code == 2 and out == "" and "'crop', 'pad', 'squash'" in line and "Value error" not in line


def test_library_checks_image_fit_without_an_image(amf_cache, no_model):
    from ditflow.stages import guide

    cache, amf = amf_cache
    with pytest.raises(InputError, match="--image-fit must be one of crop, pad, squash"):
        guide(amf, GuideConfig(prompt="a red circle"), image_fit="bogus", store=Store(cache),
              runtime=RuntimeOptions(device="cpu", quiet=True))
