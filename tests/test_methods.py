"""`--method`: DiTFlow stays the default with the hashes it had; a peer's method resolves its published schedule
and its own settings (from flags, config files and setup tables), which its gen artifact hashes; the batch has
a setup per method, and a batch of them runs, is scored and reported like any other."""
from __future__ import annotations

import json

import pytest

from ditflow.config import GuideConfig, hashed_settings
from ditflow.config_file import apply_overrides
from ditflow.errors import InputError
from helpers import cli

QUICK = ["--frames", "9", "--height", "32", "--width", "48", "--blocks", "1"]


def resolve(cfg: GuideConfig, model: str = "toy") -> GuideConfig:
    from ditflow.backbones import resolve_model

    return resolve_model(model).guide_config(cfg)


def test_a_ditflow_run_hashes_no_method_keys():
    """Every DiTFlow run keeps the hash it had before methods existed (the demo's hashes hold)."""
    cfg = resolve(GuideConfig(prompt="a blue bar on a white background"))
    assert cfg.method == "ditflow" and cfg.method_settings == {}
    assert "method" not in hashed_settings(cfg) and "method_settings" not in hashed_settings(cfg)


def test_a_peers_published_schedule_fills_what_is_not_given():
    cfg = resolve(GuideConfig(prompt="a blue bar on a white background", method="flowmotion"))
    assert (cfg.guidance_range, cfg.opt_steps, cfg.lr, cfg.injection) == ((50, 40), 3, (0.003, 0.003), False)
    assert cfg.opt_mode == "latent" and cfg.loss_weighting is None  # DiTFlow's own stay unset
    assert cfg.method_settings == {"alpha": 20.0, "beta": 5.0, "gamma": 0.1, "source_latent": "noised"}
    given = resolve(GuideConfig(prompt="a blue bar on a white background", method="fastvmt", lr=(0.01, 0.005),
                                method_settings={"window": 5}))
    assert given.lr == (0.01, 0.005) and given.grad_reuse == 3 and given.method_settings["window"] == 5
    assert hashed_settings(given)["method_settings"]["tile"] == [3, 4]


def test_a_methods_setting_goes_to_method_settings_from_any_layer():
    cfg = apply_overrides(GuideConfig(), {"method": "fastvmt", "window": 7}, {"tile": [2, 2]})
    assert cfg.method == "fastvmt" and cfg.method_settings == {"window": 7, "tile": (2, 2)}


def test_another_methods_setting_is_refused_before_loading():
    with pytest.raises(InputError, match="--alpha is a setting of --method flowmotion; this run's method is fastvmt"):
        resolve(GuideConfig(prompt="a blue bar on a white background", method="fastvmt", method_settings={"alpha": 1.0}))


def test_a_setup_table_may_pick_a_method_and_its_settings(tmp_path):
    from ditflow.batch.setups import SETUPS, check_custom

    assert {SETUPS[m]["method"] for m in ("flowmotion", "ropecraft", "fastvmt")} == {"flowmotion", "ropecraft", "fastvmt"}
    mine = check_custom({"gentle": {"method": "flowmotion", "alpha": 5.0, "lr": [0.001, 0.001]}}, "setups.toml")
    assert apply_overrides(GuideConfig(), mine["gentle"]).method_settings == {"alpha": 5.0}
    with pytest.raises(InputError, match="alpha"):
        check_custom({"bad": {"method": "flowmotion", "alpha": -1.0}}, "setups.toml")


@pytest.fixture(scope="module")
def method_batch(tiny_rope, ref_video, tmp_path_factory):
    """One batch of the three peers' setups and the backbone on a tiny CogVideoX (3 steps, 2 guided: FlowMotion's
    first step, at ᾱ = 0 on CogVideoX, cannot move the latent)."""
    work = tmp_path_factory.mktemp("methods-batch")
    (work / "runs.csv").write_text(f"video,prompt\n{ref_video},a red circle\n")
    code, out, err = cli(["batch", str(work / "runs.csv"), "--model", str(tiny_rope), *QUICK, "--steps", "3",
                          "--guidance-range", "3,1", "--opt-steps", "1", "--setups", "backbone,flowmotion,ropecraft,fastvmt",
                          "--metrics", "mf", "--tracker", "lk", "--json-out", str(work / "out.json"),
                          "--cache", str(work / "cache"), "--device", "cpu", "-q"])
    assert code == 0, err
    return work, json.loads((work / "out.json").read_text())


def test_a_batch_runs_and_scores_each_methods_setup(method_batch):
    _, rows = method_batch
    assert [r["setup"] for r in rows] == ["backbone", "flowmotion", "ropecraft", "fastvmt"]
    assert all(r["status"] == "ok" and r["motion_fidelity"] is not None for r in rows)
    assert len({r["gen"] for r in rows}) == 4 and len({r["motion_fidelity"] for r in rows}) == 4  # each moved


def test_report_tabulates_the_methods(method_batch):
    work, _ = method_batch
    code, out, err = cli(["report", str(work / "out.json"), "--md", str(work / "r.md"), "--cache", str(work / "cache")])
    table = (work / "r.md").read_text()
    assert code == 0, err
    assert all(f"| {s} " in table for s in ("flowmotion", "ropecraft", "fastvmt"))


def test_cache_show_says_the_method_and_its_settings(method_batch):
    work, rows = method_batch
    code, out, err = cli(["cache", "show", rows[1]["gen"], "--cache", str(work / "cache")])
    shown = json.loads(out)
    assert code == 0 and shown["inputs"]["method"] == "flowmotion" and shown["inputs"]["method_settings"]["alpha"] == 20
