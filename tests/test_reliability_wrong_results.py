"""Nothing is cached as a silently wrong result: NaN, infinities and out-of-range values are refused
wherever they come from (flags, config files, a model's ditflow.json, Python), with one line naming the
setting, and nothing is written."""
import json
import shutil

import pytest

from helpers import FRAMES, HEIGHT, WIDTH, one_error_line, run_cli, tree
from ditflow.config import ExtractConfig, GuideConfig
from ditflow.config_file import load_config_file
from ditflow.errors import InputError


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "0"),
                                         ("--temperature", "-1")])
def test_extract_refuses_bad_temperature(flag, value, tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    argv = ["extract", ref_video, "--model", tiny_rope, "--frames", str(FRAMES), "--height", str(HEIGHT),
            "--width", str(WIDTH), flag, value, "--cache", str(tmp_path / "c")]
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and flag in one_error_line(err) and out == ""
    assert tree(tmp_path / "c") == {}


@pytest.mark.parametrize("argv, flag", [
    (["--cfg", "nan"], "--cfg"), (["--cfg", "-3"], "--cfg"), (["--cfg", "0.5"], "--cfg"), (["--cfg", "inf"], "--cfg"),
    (["--lr", "nan,0.001"], "--lr"), (["--lr", "0.01,-1"], "--lr"), (["--temperature", "nan"], "--temperature"),
    (["--steps", "0"], "--steps"), (["--opt-steps", "0"], "--opt-steps"), (["--seed", "-1"], "--seed"),
    (["--guidance-range", "3,5"], "--guidance-range"), (["--injection-blocks", "-1"], "--injection-blocks"),
    (["--injection-blocks", "99"], "--injection-blocks"),
    (["--steps", "4", "--guidance-range", "50,40"], "selects none of the 4 steps"),  # an empty range, before loading
    (["--scheduler", "euler"], "--scheduler"), (["--dynamic-cfg", "--cfg", "1"], "--dynamic-cfg"),
])
def test_guide_refuses_bad_numbers(argv, flag, amf_cache, no_model, capsys, monkeypatch):
    cache, amf = amf_cache
    before = tree(cache)
    code, out, err = run_cli(["guide", "--amf", amf, "-p", "a red circle", *argv, "--cache", str(cache)], capsys, monkeypatch)
    assert code == 2 and flag in one_error_line(err) and out == ""
    assert tree(cache) == before


def test_library_refuses_nan_too():
    with pytest.raises(InputError, match="--cfg"):
        GuideConfig(prompt="x", cfg=float("nan")).validate()
    with pytest.raises(InputError, match="--temperature"):
        ExtractConfig(temperature=float("nan")).validate()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("frames = true\n", "setting 'frames' of"),
    ("[guide]\nthreshold_loss = \"no\"\n", "setting 'threshold_loss' in [guide]"),
    ("[guide]\nsteps = 4.5\n", "must be an integer"),
    ("[guide]\nlr = [0.1]\n", "a list of 2"),
    ("framez = 9\n", "unknown setting 'framez'"),
    ("[gude]\nsteps = 4\n", "unknown section [gude]"),
    ("[guide]\nframes = 9\n", "unknown setting"),
    ("[runtime]\nquiet = 1\n", "true or false"),
])
def test_config_file_types_and_names_are_checked(text, message, tmp_path):
    path = write(tmp_path, "run.toml", text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        load_config_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_config_file_ranges_are_checked(tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    path = write(tmp_path, "run.toml", "[extract]\nmoft_fraction = 5.0\n")
    argv = ["extract", ref_video, "--model", tiny_rope, "--frames", str(FRAMES), "--height", str(HEIGHT),
            "--width", str(WIDTH), "--config", str(path), "--cache", str(tmp_path / "c")]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and "--moft-fraction must be > 0 and <= 1" in one_error_line(err)
    assert tree(tmp_path / "c") == {}


def test_config_file_that_is_not_utf8(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "run.toml", "source_prompt = \"caf\xe9\"\n".encode("latin-1"))
    code, _, err = run_cli(["extract", "x.mp4", "--config", str(path), "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 2 and "not UTF-8" in one_error_line(err)


def test_flat_runtime_keys_apply(tmp_path):
    from ditflow.cli._common import runtime

    data = load_config_file(write(tmp_path, "run.yaml", "device: cpu\nquiet: true\n"))
    rt = runtime(data)
    assert rt.device == "cpu" and rt.quiet is True


def test_models_defaults_obey_the_same_rules(tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_rope, folder)
    (folder / "ditflow.json").write_text(json.dumps({"frames": True}))
    argv = ["extract", ref_video, "--model", str(folder), "--height", str(HEIGHT), "--width", str(WIDTH),
            "--cache", str(tmp_path / "c")]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and "--frames must be an integer" in one_error_line(err)
    assert tree(tmp_path / "c") == {}
