"""The command line as a user drives it: results on stdout, one-line errors, exit codes, no traceback."""
import sys

import pytest

from helpers import FRAMES, HEIGHT, WIDTH, run_cli
from ditflow.store import Store




@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    return lambda *argv: run_cli([*argv, "--cache", str(cache)], capsys, monkeypatch), Store(cache)


def size_flags(model):
    return ["--model", model, "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1", "-q"]


def assert_one_line_error(code, out, err, text):
    assert code not in (0, None)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], err
    assert "Traceback" not in err and out == ""


def test_chain_prints_hashes(cli, tiny_rope, ref_video, tmp_path):
    call, store = cli
    code, out, _ = call("extract", ref_video, *size_flags(tiny_rope))
    assert code == 0 and len(out.strip()) == 64
    amf = out.strip()
    video = tmp_path / "gen.gif"
    code, out, _ = call("guide", "--amf", amf[:8], "-p", "a red circle", "--opt-mode", "emb", "--steps", "4",
                        "--guidance-range", "4,2", "--lr", "0.05,0.05", "-q", "--out", str(video))
    assert code == 0 and video.is_file()
    gen = out.strip()
    code, out, _ = call("inject", "--emb", gen, "-p", "a blue square", "-q")
    assert code == 0 and len(out.strip()) == 64
    assert {store.info(h).kind for h in store.hashes()} == {"amf", "gen"}
    # --out never overwrites silently
    code, out, err = call("guide", "--amf", amf, "-p", "a red circle", "--opt-mode", "emb", "--steps", "4",
                          "--guidance-range", "4,2", "--lr", "0.05,0.05", "-q", "--out", str(video))
    assert_one_line_error(code, out, err, "already exists")


def test_bad_inputs_one_line_errors(cli, tiny_rope, tiny_sincos, ref_video, tmp_path):
    call, store = cli
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00garbage")
    cases = [
        (("extract", str(tmp_path / "missing.mp4"), *size_flags(tiny_rope)), "not found"),
        (("extract", str(bad), *size_flags(tiny_rope)), "cannot read video"),
        (("extract", ref_video, *size_flags(tiny_rope)[:-1], "--frames", "50", "-q"), "fewer than"),
        (("extract", ref_video, "--model", tiny_rope, "--height", "33", "--width", "48", "--frames", "9", "-q"), "not divisible"),
        (("guide", "--amf", "0123456789", "-p", "x", "-q"), "no artifact"),
        (("guide", "--amf", "xyz", "-p", "x", "-q"), "not an artifact hash"),
    ]
    for argv, text in cases:
        assert_one_line_error(*call(*argv), text)
    assert store.hashes() == []
    code, out, _ = call("extract", ref_video, *size_flags(tiny_rope))
    amf = out.strip()
    before = store.hashes()
    for argv, text in [
        (("guide", "--amf", amf, "-p", "x", "--model", tiny_sincos, "-q"), "extracted with model"),
        (("inject", "--emb", amf, "-p", "x", "-q"), "not 'gen'"),
        (("guide", "--amf", amf, "-p", "x", "--loss", "nope", "-q"), "--loss"),
        (("guide", "--amf", amf, "-p", "x", "--lr", "fast", "-q"), "--lr"),
        (("guide", "--amf", amf, "-p", "x", "--opt-mode", "rope", "-q"), "--opt-mode"),
    ]:
        assert_one_line_error(*call(*argv), text)
    assert store.hashes() == before


def test_ambiguous_prefix(cli, tiny_rope):
    call, store = cli
    from helpers import put, twin_names

    first, second, prefix = twin_names()  # objects are named by their inputs' hash: two that share a prefix
    put(store, first), put(store, second)
    assert_one_line_error(*call("guide", "--amf", prefix, "-p", "x", "-q"), "ambiguous")


def test_cache_commands(cli, tiny_rope, ref_video):
    call, store = cli
    _, out, _ = call("extract", ref_video, *size_flags(tiny_rope))
    h = out.strip()
    code, out, _ = call("cache", "ls", "--json")
    assert code == 0 and h in out
    code, out, _ = call("cache", "path", h[:10])
    assert code == 0 and out.strip() == str(store.object_path(h))
    code, out, _ = call("cache", "show", h[:10])
    assert code == 0 and '"kind": "amf"' in out
    (store.tmp / "stale").mkdir(parents=True)
    code, out, err = call("cache", "gc", "--dry-run")
    assert code == 0 and f"not ditflow's, left alone: {store.tmp / 'stale'}" in err.splitlines() and (store.tmp / "stale").exists()
    # Before, gc removed anything in tmp/; a folder the store did not make is now reported and kept.
    code, out, err = call("cache", "gc")
    assert "not ditflow's, left alone" in err and (store.tmp / "stale").exists()
    code, out, _ = call("cache", "rm", h[:10])
    assert code == 0 and store.hashes() == []


def test_config_file_overrides(cli, tiny_rope, ref_video, tmp_path):
    call, store = cli
    cfg = tmp_path / "settings.toml"
    cfg.write_text(f'model = "{tiny_rope}"\n[extract]\nframes = {FRAMES}\nheight = {HEIGHT}\nwidth = {WIDTH}\nblocks = [1]\ntemperature = 3.0\n')
    code, out, _ = call("extract", ref_video, "--config", str(cfg), "-q")
    assert code == 0
    assert store.info(out.strip()).meta["inputs"]["temperature"] == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("extract:\n  nonsense: 1\n")
    assert_one_line_error(*call("extract", ref_video, "--config", str(bad), "-q"), "unknown setting")


def test_help_is_fast_and_lazy():
    import subprocess

    code = ("import sys, ditflow.cli.app; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, sorted(m for m in sys.modules if m in ('torch','diffusers'))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_cli_reference_is_current():
    """docs/cli.md is made from the commands' help (`make docs`): help written once cannot drift."""
    from pathlib import Path

    from ditflow.cli.docs import cli_markdown

    shipped = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert shipped == cli_markdown(), "docs/cli.md is stale: run `make docs`"


def test_guide_help_offers_none_of_the_cut_knobs():
    from ditflow.cli.docs import cli_markdown

    text = cli_markdown()
    for knob in ("--optimizer", "--grad-blur", "--latent-stride", "--emb-after", "salient"):
        assert knob not in text


def _options():
    """(command path, option) for every option of every command."""
    import typer

    from ditflow.cli.app import app
    from ditflow.cli.docs import _commands

    root = typer.main.get_command(app)
    for path, cmd in [("ditflow", root), *_commands(root, "ditflow")]:
        for p in cmd.params:
            if p.param_type_name == "option":
                yield path, p


def test_help_shows_a_value_only_for_options_that_take_one():
    """Typer's own metavars (`<bool>` on a flag, `<str>` for a choice) are replaced: a flag shows none, a
    value option a short name or its choices."""
    for path, p in _options():
        if p.is_flag:
            assert p.metavar == "", (path, p.opts)
        else:
            assert p.metavar and not p.metavar.startswith("<"), (path, p.opts, p.metavar)
    from ditflow.cli.options import choices
    from ditflow.video import OUTPUT_FORMATS

    opts = {p.opts[0]: p for path, p in _options() if path == "ditflow guide"}
    assert opts["--opt-mode"].metavar == "[latent|emb]" and opts["--guidance-range"].metavar == "HI,LO"
    assert opts["--format"].metavar == choices(OUTPUT_FORMATS)


def test_json_is_a_flag_everywhere_and_a_file_only_with_json_out():
    seen = {path for path, p in _options() if "--json" in p.opts and p.is_flag}
    assert seen >= {"ditflow extract", "ditflow guide", "ditflow inject", "ditflow cache ls", "ditflow eval", "ditflow batch"}
    assert all(p.is_flag for _, p in _options() if "--json" in p.opts)
    assert {path for path, p in _options() if "--json-out" in p.opts} == {"ditflow eval", "ditflow batch"}


def test_guide_help_is_in_panels_and_fits_100_columns():
    import subprocess

    env = {**__import__("os").environ, "COLUMNS": "100"}
    text = subprocess.run([sys.executable, "-m", "ditflow.cli.app", "guide", "--help"], capture_output=True, text=True,
                          env=env, timeout=60).stdout
    from ditflow.backbones import family_settings
    from ditflow.cli.options import family_panel
    from ditflow.methods import METHODS, method_panel

    cogvideox = family_panel(family_settings()["scheduler"].family)  # the panels' titles, from the registry
    wan = family_panel(family_settings()["cfg_low_noise"].family)
    ltx2 = family_panel(family_settings()["audio_cfg"].family)
    methods = [method_panel(m) for m in METHODS.values() if m.settings is not None]
    panels = [line.split("─ ")[1].split(" ─")[0] for line in text.splitlines() if line.startswith("╭─ ")]
    assert panels == ["Options", "What to make", "Guidance", "Sampling", cogvideox, wan, ltx2, "Fast mode", *methods, "Output",
                      "Runtime"]
    family = text.split(cogvideox)[1].split("╰")[0]
    assert "--scheduler" in family and "--dynamic-cfg" in family and "<" not in text
    assert "--cfg-low-noise" in text.split(wan)[1].split("╰")[0]
    assert max(len(line) for line in text.splitlines()) <= 100


def test_every_guide_setting_is_one_flag():
    """guide declares each setting once, under its GuideConfig/RuntimeOptions field's name (or --no-NAME), each
    model family's own settings too (they fill GuideConfig.family)."""
    import inspect
    from dataclasses import fields

    from ditflow.backbones import family_settings
    from ditflow.cli.guide import guide
    from ditflow.config import GuideConfig
    from ditflow.methods import method_settings

    names = set(inspect.signature(guide).parameters)
    unexposed = {f.name for f in fields(GuideConfig)} - names - {n[3:] for n in names if n.startswith("no_")}
    assert unexposed == {"threshold_loss", "family", "method_settings"}
    assert set(family_settings()) <= names and set(method_settings()) <= names


def test_a_missing_command_module_is_an_import_error(monkeypatch):
    """A packaging error surfaces instead of a CLI quietly lacking a command."""
    import ditflow.cli
    from ditflow.cli.app import _register

    monkeypatch.delattr(ditflow.cli, "report")
    monkeypatch.setitem(sys.modules, "ditflow.cli.report", None)
    with pytest.raises(ImportError):
        _register()
