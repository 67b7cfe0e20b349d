"""The CLI fails like the tools people trust: usage errors exit 2 with one line naming the option, a bare
group prints help and succeeds, Ctrl-C says it was interrupted, and what can be checked before a model
loads is checked before it loads."""
import subprocess
import sys

import pytest

from conftest import FRAMES, HEIGHT, WIDTH, run_cli
from ditflow.store import Store


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def tree(path):
    """What a folder holds: relative path -> bytes (files) or None (folders)."""
    if not path.exists():
        return {}
    return {p.relative_to(path).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("argv", [[], ["cache"], ["viz"]])
def test_bare_group_prints_help_and_succeeds(argv, capsys, monkeypatch):
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert code == 0 and "Usage:" in out and "error" not in err


def test_version(capsys, monkeypatch):
    from ditflow import __version__

    code, out, _ = run_cli(["--version"], capsys, monkeypatch)
    assert code == 0 and out.strip() == f"ditflow {__version__}"


@pytest.mark.parametrize("argv, named", [
    (["guide", "--amf", "abcdef", "-p", "x", "--steps", "four"], "'--steps'"),
    (["guide", "--amf", "abcdef", "-p", "x", "--stpes", "4"], "--stpes"),
    (["guide", "--amf", "abcdef"], "'--prompt'"),
    (["extract"], "'VIDEO'"),
    (["frobnicate"], "frobnicate"),
    (["cache", "ls", "--kind"], "--kind"),
])
def test_usage_error_exits_2_naming_the_option(argv, named, capsys, monkeypatch):
    code, out, err = run_cli(argv, capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 2 and named in line and out == ""
    assert "NoSuchOption" not in line and "BadParameter" not in line  # a message, not a class name


def installed_script():
    from pathlib import Path

    script = Path(sys.executable).parent / "ditflow"
    if not script.is_file():
        pytest.skip("ditflow is not installed in this environment (make install)")
    return str(script)


def test_usage_error_from_the_installed_entry_point(tmp_path):
    proc = subprocess.run([installed_script(), "guide", "--amf", "abcdef", "-p", "x", "--steps", "four"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "--steps" in one_error_line(proc.stderr)


def test_the_install_claims_no_top_level_commands_package(tmp_path):
    """The CLI installs as ditflow.cli: outside the repo, `import commands` finds nothing of ours."""
    installed_script()
    probe = "import importlib.util as u; s = u.find_spec('commands'); print(s.origin if s else '')"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    repo = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and not proc.stdout.strip().startswith(repo)
    proc = subprocess.run([sys.executable, "-c", "import ditflow.cli.app"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_ctrl_c_exits_130_and_says_nothing_was_written(ref_video, tmp_path, capsys, monkeypatch):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr("ditflow.stages.extract", interrupted)
    code, out, err = run_cli(["extract", ref_video, "--cache", str(tmp_path / "cache")], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 130 and "interrupted" in line and "nothing was written" in line and out == ""
    assert tree(tmp_path / "cache") == {}


def test_a_bug_is_exit_70_with_one_line(ref_video, tmp_path, capsys, monkeypatch):
    def bug(*_, **__):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("ditflow.stages.extract", bug)
    code, _, err = run_cli(["extract", ref_video, "--cache", str(tmp_path / "cache")], capsys, monkeypatch)
    assert code == 70 and "internal error: ZeroDivisionError" in one_error_line(err)


@pytest.mark.parametrize("device, text", [("bogus", "not a device"), ("meta", "only cpu, cuda"), ("cuda:99", "cuda")])
def test_bad_device_is_refused_before_the_model_loads(device, text, tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    code, out, err = run_cli(["extract", ref_video, "--model", tiny_rope, "--device", device, "--cache", str(tmp_path / "c")],
                             capsys, monkeypatch)
    assert code == 2 and "--device" in one_error_line(err) and text in err and out == ""
    assert tree(tmp_path / "c") == {}


def test_cuda_without_a_gpu_is_refused(tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(["extract", ref_video, "--model", tiny_rope, "--device", "cuda", "--cache", str(tmp_path / "c")],
                           capsys, monkeypatch)
    assert code == 2 and "no CUDA GPU" in one_error_line(err)


def test_huge_seed_is_a_usage_error(amf_cache, no_model, capsys, monkeypatch):
    cache, amf = amf_cache
    before = tree(cache)
    code, _, err = run_cli(["guide", "--amf", amf, "-p", "x", "--seed", str(2**70), "--cache", str(cache)], capsys, monkeypatch)
    assert code == 2 and "--seed" in one_error_line(err)
    assert tree(cache) == before


@pytest.mark.parametrize("flag", ["--frames", "--height", "--width"])
def test_zero_size_is_refused_not_replaced_by_the_default(flag, tiny_rope, ref_video, tmp_path, no_model, capsys, monkeypatch):
    argv = ["extract", ref_video, "--model", tiny_rope, "--frames", str(FRAMES), "--height", str(HEIGHT),
            "--width", str(WIDTH), flag, "0", "--cache", str(tmp_path / "c")]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and f"{flag} must be >= 1" in one_error_line(err)
    assert tree(tmp_path / "c") == {}


def toy_amf(cache):
    """An AMF artifact of the toy model without running it: the guide checks the prompt before loading."""
    from ditflow.backbone import model_identity

    store = Store(cache)
    inputs = {"model_arg": "toy", "model": model_identity("toy"), "frames": 17, "height": 64, "width": 64,
              "blocks": [6, 7], "dtype": "float32"}
    from ditflow.store import content_key

    h = content_key("amf", inputs)
    with store.writer(h, "amf", inputs, extra={"grid": [5, 4, 4]}) as folder:
        (folder / "payload.bin").write_bytes(b"0")
    return h


def test_toy_vocabulary_is_checked_before_the_model_loads(tmp_path, no_model, capsys, monkeypatch):
    h = toy_amf(tmp_path / "c")
    monkeypatch.setattr("ditflow.artifacts.load", lambda store, ref, kind=None: _FakeAmf(store.info(ref)))
    code, _, err = run_cli(["guide", "--amf", h, "-p", "a red hexagon", "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 2 and "does not know the word(s) hexagon" in one_error_line(err)


def test_toy_prompt_takes_case_and_punctuation(tmp_path, capsys, monkeypatch):
    h = toy_amf(tmp_path / "c")
    monkeypatch.setattr("ditflow.artifacts.load", lambda store, ref, kind=None: _FakeAmf(store.info(ref)))

    class Loaded(Exception):
        pass

    def loaded(*_, **__):
        raise Loaded

    from ditflow.config import GuideConfig, RuntimeOptions
    from ditflow.stages import guide

    monkeypatch.setattr("ditflow.stages._generate", loaded)  # the prompt passed every check before generation
    with pytest.raises(Loaded):
        guide(h, GuideConfig(prompt="A red circle."), runtime=RuntimeOptions(device="cpu"), store=Store(tmp_path / "c"))


class _FakeAmf:
    def __init__(self, info):
        self.info = info
        self.hash, self.inputs = info.hash, info.meta["inputs"]


def test_eval_checks_its_device_and_grid_before_reading_videos(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "not-read.mp4")  # never opened: the checks come first
    code, _, err = run_cli(["eval", missing, "--device", "bogus"], capsys, monkeypatch)
    assert code == 2 and "--device" in one_error_line(err)
    for flag, value in (("--grid-size", "0"), ("--grid-size", "100000"), ("--max-frames", "-2")):
        code, _, err = run_cli(["eval", missing, flag, value], capsys, monkeypatch)
        assert code == 2 and flag in one_error_line(err)


@pytest.mark.parametrize("argv, flag", [(["gc", "--older-than", "nan"], "--older-than"), (["gc", "--older-than", "-5"], "--older-than"),
                                        (["ls", "--kind", "bogus"], "--kind")])
def test_cache_commands_check_their_options(argv, flag, tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["cache", *argv, "--cache", str(tmp_path)], capsys, monkeypatch)
    assert code == 2 and flag in one_error_line(err)
