"""`ditflow ui` without a browser: its forms are the CLI's flags (rules, parsing, messages, hashes), its server's
safety checks, cancelling, the store's delete rule, and the report reading its cache from the results."""
from __future__ import annotations

import json

import pytest

from ditflow.config import GuideConfig
from ditflow.errors import InputError
from ditflow.store import Store
from helpers import assert_one_line_error, put, run_cli

pytest.importorskip("gradio", reason="the ui extra is not installed (pip install -e '.[ui]')")
QUICK = ["--steps", "2", "--guidance-range", "2,1", "--opt-steps", "1"]


def test_fields_take_help_range_and_choices_from_the_config_rules():
    from ditflow.backbones import resolve_model
    from ditflow.checks import help_of
    from ditflow.ui.forms import guide_fields

    fields = {f.name: f for f in guide_fields(resolve_model("toy").preset)}
    assert fields["steps"].help.startswith(help_of(GuideConfig, "steps")) and "Must be >= 1" in fields["steps"].help
    assert fields["loss_weighting"].choices == ("none", "confidence", "mutual") and fields["loss_weighting"].default == "mutual"
    assert fields["guidance_range"].default == "35,15"  # the toy model's ditflow.json, as `guide` resolves it
    assert fields["fast"].kind == "flag"


def test_a_form_is_the_command_line_it_stands_for():
    from ditflow.ui.forms import guide_fields, parse, setup_flags, to_args
    from ditflow.backbones import resolve_model

    form = guide_fields(resolve_model("toy").preset)
    values = ["" for _ in form]
    values[[f.name for f in form].index("steps")] = " 7 "
    values[[f.name for f in form].index("fast")] = True
    assert to_args(form, values) == ["--steps", "7", "--fast"]
    assert setup_flags("backbone") == ["--no-guidance", "--no-injection"]
    assert setup_flags("smm") == ["--loss", "smm", "--opt-mode", "latent"]
    params = parse("guide", ["--amf", "abcdef", "--prompt", "x", *to_args(form, values)])
    assert params["steps"] == 7 and params["fast"] is True


def test_a_bad_value_is_the_cli_line(capsys, monkeypatch, tmp_path):
    """The page's message for a value the CLI's parser refuses is the CLI's own line."""
    from ditflow.ui.actions import message
    from ditflow.ui.forms import parse

    code, out, err = run_cli(["guide", "--amf", "abcdef", "--prompt", "x", "--steps", "many", "--cache", str(tmp_path)],
                             capsys, monkeypatch)
    assert_one_line_error(code, out, err, "--steps", 2)
    with pytest.raises(InputError) as e:
        parse("guide", ["--amf", "abcdef", "--prompt", "x", "--steps", "many"])
    assert message(e.value) == err.strip()


def test_server_refuses_other_hosts_without_a_password(capsys, monkeypatch, tmp_path):
    from ditflow.ui.server import check_host, parse_auth

    code, out, err = run_cli(["ui", "--model", "toy", "--host", "0.0.0.0"], capsys, monkeypatch)
    assert_one_line_error(code, out, err, "--host 0.0.0.0 lets other machines reach the page: give --auth", 2)
    check_host("127.0.0.1", [])
    check_host("0.0.0.0", parse_auth("ann:secret", None))
    (tmp_path / "users").write_text("# who may\nann:secret\nbob:pa:ss\n")
    assert parse_auth(None, tmp_path / "users") == [("ann", "secret"), ("bob", "pa:ss")]
    with pytest.raises(InputError, match="USER:PASSWORD"):
        parse_auth("nopassword", None)


def test_remove_keeps_what_others_reference(tmp_path):
    store = Store(tmp_path / "cache")
    parent = put(store, "p")
    child = put(store, "c", parents=[parent])
    with pytest.raises(InputError, match="referenced by another artifact; pass --force"):
        store.remove([parent])
    assert store.exists(parent)
    assert store.remove([child, child[:8]]) == [child] and not store.exists(child)
    assert store.remove([parent]) == [parent]


@pytest.fixture(scope="module")
def runner(amf_cache, tmp_path_factory):
    from ditflow.ui.actions import Runner

    cache, amf = amf_cache
    return Runner(store=Store(cache), model="toy", work=tmp_path_factory.mktemp("ui-work"), device="cpu"), amf


def test_a_page_run_is_the_cli_run(runner, capsys, monkeypatch):
    """The same settings in the page and on the command line: one artifact, the second call a cache hit."""
    r, amf = runner
    steps = []
    art = r.run("tab-1", lambda: r.guide(amf, "a red circle", "ditflow-emb", QUICK), lambda f, t: steps.append(t))
    assert any(t.startswith("denoise") for t in steps)  # the bar followed the denoising steps
    code, out, err = run_cli(["guide", "--amf", amf, "--prompt", "a red circle", "--loss", "flow", "--opt-mode", "emb",
                              *QUICK, "--cache", str(r.store.root), "--device", "cpu"], capsys, monkeypatch)
    assert code == 0 and out.strip() == art.hash and "cache hit" in err


def test_cancel_leaves_no_artifact(runner):
    from ditflow.ui.actions import Cancelled

    r, amf = runner
    before = set(r.store.hashes())

    def report(fraction, text):
        r.cancel("tab-2")  # the Cancel button, pressed while the run is on

    with pytest.raises(Cancelled):
        r.run("tab-2", lambda: r.guide(amf, "a red circle", "ditflow-latent", [*QUICK, "--seed", "5"]), report)
    assert set(r.store.hashes()) == before
    assert not any(p.name.startswith(".tmp") or p.is_dir() for p in (r.store.tmp.iterdir() if r.store.tmp.exists() else []))


def test_report_finds_the_cache_the_results_record(runner, tmp_path, capsys, monkeypatch):
    from ditflow.batch.results import write_json

    r, amf = runner
    gen = next(h for h in r.store.hashes() if r.store.info(h).kind == "gen")
    row = {"video": "ref.gif", "prompt": "p", "setup": "ditflow-emb", "seed": 1, "amf": amf, "gen": gen,
           "motion_fidelity": 0.5, "status": "ok", "row": 0, "cache": str(r.store.root)}
    results = write_json([row], tmp_path / "results.json")
    monkeypatch.setenv("DITFLOW_CACHE", str(tmp_path / "elsewhere"))
    code, out, err = run_cli(["report", str(results), "--html", str(tmp_path / "r.html"), "--md", str(tmp_path / "r.md")],
                             capsys, monkeypatch)
    page = (tmp_path / "r.html").read_text()
    assert code == 0 and "data:image/png;base64," in page and "artifacts not in this cache" not in page
    assert json.loads(results.read_text())[0]["cache"] == str(r.store.root)
    import shutil

    r.uploads.mkdir(parents=True, exist_ok=True)
    uploaded = shutil.copy(results, r.uploads / "results.json")  # the page reads what was uploaded to it
    assert "data:image/png;base64," in r.report(str(uploaded))  # the page's Batch tab: the same page


def test_a_methods_setup_and_settings_in_the_page_are_the_cli_run(runner, capsys, monkeypatch):
    """The peers' setups in the page, with a setting from its method fields: the CLI's `--method` run."""
    from ditflow.ui.forms import method_fields, to_args

    r, amf = runner
    fields = method_fields()
    values = ["3" if f.name == "alpha" else "" for f in fields]
    assert to_args(fields, values) == ["--alpha", "3"] and {"window", "flow", "alpha"} <= {f.name for f in fields}
    art = r.run("tab-3", lambda: r.guide(amf, "a red circle", "flowmotion", [*QUICK, *to_args(fields, values)]),
                lambda f, t: None)
    code, out, err = run_cli(["guide", "--amf", amf, "--prompt", "a red circle", "--method", "flowmotion", "--alpha", "3",
                              *QUICK, "--cache", str(r.store.root), "--device", "cpu"], capsys, monkeypatch)
    assert code == 0 and out.strip() == art.hash and "cache hit" in err
    assert art.inputs["method_settings"]["alpha"] == 3
