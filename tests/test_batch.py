"""`ditflow batch` and `ditflow report` on the tiny model: a run's rows, the cache as the queue, workers and Ray
on one cache, bad rows, and the report. The expensive runs are module fixtures shared by the tests."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cli, moving_square
from ditflow.store import Store

SIZE = ["--frames", "9", "--height", "32", "--width", "48", "--steps", "4", "--guidance-range", "4,2", "--opt-steps", "2",
        "--tracker", "lk", "-q"]
P1, P2 = "a red circle on a grey background", "a blue square on a white background"


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def hashes(rows: list[dict]) -> dict[int, tuple[str, str]]:
    return {int(r["row"]): (r["amf"], r["gen"]) for r in rows}


@pytest.fixture(scope="module")
def work(tmp_path_factory, ref_video):
    """Two reference clips and the manifests of these tests."""
    from ditflow.video import write_video

    root = tmp_path_factory.mktemp("batch")
    write_video(moving_square(step=2)[::-1].copy(), root / "b.gif")
    (root / "a.gif").write_bytes(Path(ref_video).read_bytes())
    (root / "runs.csv").write_text(f"video,prompt,setup\na.gif,{P1},backbone\na.gif,{P1},ditflow-latent\n"
                                   f"a.gif,{P1},ditflow-emb\na.gif,{P2},inject\n")
    (root / "grid.toml").write_text(f'video = ["a.gif", "b.gif"]\nprompt = ["{P1}", "{P2}"]\nsetup = ["backbone", "injection"]\n')
    return root


@pytest.fixture(scope="module")
def csv_run(work, tiny_rope):
    """runs.csv in-process (one worker): its exit code, result rows, how many model loads it took and how many
    times a model string was looked up on disk."""
    from ditflow.backbones import loaded, registry

    before, lookups = loaded.loads(), []
    find = registry.find_folder
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "find_folder", lambda *a: lookups.append(a) or find(*a))
        code, _, err = cli(["batch", str(work / "runs.csv"), "--model", tiny_rope, *SIZE, "--cache", str(work / "cache"),
                            "--csv", str(work / "out.csv")])
    return {"code": code, "err": err, "rows": rows_of(work / "out.csv"), "loads": loaded.loads() - before,
            "lookups": len(lookups)}


def test_csv_batch_writes_one_ok_row_per_run_with_hashes_and_mf(csv_run):
    rows = csv_run["rows"]
    assert csv_run["code"] == 0, csv_run["err"]
    assert [r["setup"] for r in rows] == ["backbone", "ditflow-latent", "ditflow-emb", "inject"]
    assert all(r["status"] == "ok" and len(r["amf"]) == 64 and len(r["gen"]) == 64 and float(r["motion_fidelity"]) >= 0
               for r in rows)


def test_batch_resolves_the_model_once_for_all_rows(csv_run):
    """Four rows, each extract -> guide (-> inject): the model string is looked up once, by the preflight."""
    assert csv_run["lookups"] == 1


def test_batch_loads_the_model_once_for_all_rows(csv_run):
    assert csv_run["loads"] == 1


def test_missing_clip_weights_leave_clip_score_empty_with_the_reason(csv_run):
    row = csv_run["rows"][0]
    assert row["clip_score"] == "" and "clip_score:" in row["notes"]


def test_inject_row_replays_the_emb_run_of_the_other_prompt(csv_run, work):
    from ditflow.artifacts import load

    rows = csv_run["rows"]
    gen = load(Store(work / "cache"), rows[3]["gen"], "gen")
    assert gen.inputs["emb"] == rows[2]["gen"]


def test_rerun_recomputes_nothing(csv_run, work, tiny_rope):
    from ditflow.backbones import loaded

    store = Store(work / "cache")
    objects, before = set(store.hashes()), loaded.loads()
    code, _, _ = cli(["batch", str(work / "runs.csv"), "--model", tiny_rope, *SIZE, "--cache", str(work / "cache"),
                      "--csv", str(work / "rerun.csv")])
    rows = rows_of(work / "rerun.csv")
    assert code == 0 and all(r["cached"] == "True" for r in rows)
    assert set(store.hashes()) == objects and loaded.loads() == before
    assert hashes(rows) == hashes(csv_run["rows"])


def test_grid_expands_videos_prompts_setups(work, tiny_rope, csv_run):
    code, _, err = cli(["batch", str(work / "grid.toml"), "--model", tiny_rope, *SIZE, "--metrics", "mf",
                        "--cache", str(work / "cache"), "--json-out", str(work / "grid.json")])
    rows = json.loads((work / "grid.json").read_text())
    assert code == 0, err
    assert [(r["video"], r["prompt"], r["setup"]) for r in rows] == [
        (v, p, s) for v in ("a.gif", "b.gif") for p in (P1, P2) for s in ("backbone", "injection")]
    assert len({r["gen"] for r in rows}) == 8 and len({r["amf"] for r in rows}) == 2


def test_bad_rows_are_reported_and_the_rest_runs(work, tiny_rope, csv_run):
    (work / "bad.csv").write_text(f"video,prompt,setup,seed\nmissing.gif,{P1},backbone,1\na.gif,{P1},nosuch,1\n"
                                  f"a.gif,{P1},backbone,x\na.gif,{P1},backbone,1\n")
    code, _, err = cli(["batch", str(work / "bad.csv"), "--model", tiny_rope, *SIZE, "--cache", str(work / "cache"),
                        "--csv", str(work / "bad-out.csv")])
    rows = rows_of(work / "bad-out.csv")
    assert code == 1 and err.strip().splitlines()[-1] == "error: 3 of 4 runs failed (see the error column)"
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "ok"]
    assert "video not found" in rows[0]["error"] and "unknown setup 'nosuch'" in rows[1]["error"]
    assert "seed must be an integer" in rows[2]["error"]


@pytest.mark.parametrize("manifest, message", [
    ("video,prompt,colour\na.gif,x,red\n", "unknown field 'colour'"),
    ("video,setup\na.gif,backbone\n", "has no 'prompt'"),
    ("video,prompt\n", "has no rows"),
])
def test_malformed_manifest_is_a_usage_error_before_anything_runs(tmp_path, capsys, monkeypatch, no_model, manifest, message):
    from helpers import run_cli

    (tmp_path / "m.csv").write_text(manifest)
    code, out, err = run_cli(["batch", str(tmp_path / "m.csv"), "--model", "toy", "--csv", str(tmp_path / "o.csv")],
                             capsys, monkeypatch)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_bad_setup_table_is_a_usage_error(tmp_path, capsys, monkeypatch, no_model):
    from helpers import run_cli

    (tmp_path / "m.toml").write_text('video = "a.gif"\nprompt = "x"\nsetup = "mine"\n[setups.mine]\nloss = "l2"\n')
    code, _, err = run_cli(["batch", str(tmp_path / "m.toml"), "--model", "toy"], capsys, monkeypatch)
    assert code == 2 and "setup 'mine'" in err and "--loss" in err


def test_existing_results_file_is_refused_without_overwrite(work, tmp_path, capsys, monkeypatch, no_model):
    from helpers import run_cli

    taken = tmp_path / "taken.csv"
    taken.write_text("mine\n")
    code, _, err = run_cli(["batch", str(work / "runs.csv"), "--csv", str(taken)], capsys, monkeypatch)
    assert code == 2 and "already exists" in err and taken.read_text() == "mine\n"


@pytest.mark.slow
def test_two_local_workers_on_one_cache_give_the_same_hashes(work, tiny_rope, csv_run, tmp_path):
    cache = tmp_path / "cache"
    code, _, err = cli(["batch", str(work / "runs.csv"), "--model", tiny_rope, *SIZE, "--cache", str(cache),
                        "--workers", "2", "--csv", str(tmp_path / "w.csv")])
    assert code == 0, err
    assert hashes(rows_of(tmp_path / "w.csv")) == hashes(csv_run["rows"])
    store = Store(cache)
    assert all(store.info(h, verify=True) for h in store.hashes())  # raced publishes left verified objects only


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module's Ray tests (its start is most of their time)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_gives_the_same_hashes_as_local(work, tiny_rope, csv_run, tmp_path, ray_cluster):
    code, _, err = cli(["batch", str(work / "runs.csv"), "--model", tiny_rope, *SIZE, "--cache", str(tmp_path / "c"),
                        "--backend", "ray", "--csv", str(tmp_path / "r.csv")])
    assert code == 0, err
    assert hashes(rows_of(tmp_path / "r.csv")) == hashes(csv_run["rows"])


@pytest.mark.slow
def test_killed_batch_resumes_with_the_same_hashes(work, tiny_rope, csv_run, tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "ditflow.cli.app", "batch", str(work / "runs.csv"), "--model", tiny_rope, *SIZE,
            "--cache", str(cache), "--csv", str(tmp_path / "k.csv")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        while proc.poll() is None and not list(cache.glob("objects/*/*/scores.json")):
            time.sleep(0.2)  # until the first row is complete
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "k.csv").exists()
    code, _, err = cli([*args[3:], "--overwrite"])
    rows = rows_of(tmp_path / "k.csv")
    assert code == 0, err
    assert rows[0]["cached"] == "True" and hashes(rows) == hashes(csv_run["rows"])


def test_report_draws_a_table_per_model(csv_run, work, tiny_rope):
    code, out, _ = cli(["report", str(work / "out.csv")])
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"## {tiny_rope}"
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ") and "setup" not in ln] == [
        "backbone", "ditflow-latent", "ditflow-emb", "inject"]


def test_report_html_is_self_contained_with_plot_and_thumbnails(csv_run, work, tmp_path):
    code, _, _ = cli(["report", str(work / "out.csv"), "--md", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html"),
                      "--cache", str(work / "cache")])
    page = (tmp_path / "r.html").read_text()
    assert code == 0 and page.count("<svg") == 2 and page.count("src='data:image/png;base64,") == 4
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


def test_report_without_clip_scores_plots_mf_per_setup_and_says_why(csv_run, work, tmp_path):
    from ditflow.batch.report_html import page
    from ditflow.batch.results import read_results

    text = page(read_results(work / "out.csv"), None)
    assert "No row has a CLIP score" in text and "clip_score: CLIP weights" in text


def test_interval_is_students_t_95():
    from ditflow.batch.report import interval

    stat = interval([1.0, 2.0, 3.0, None])
    assert stat.n == 3 and stat.mean == 2.0 and stat.half == pytest.approx(4.303 / 3 ** 0.5)


def test_inject_row_of_a_video_with_one_prompt_fails(tmp_path, ref_video):
    from ditflow.batch.manifest import read_manifest

    (tmp_path / "m.csv").write_text(f"video,prompt,setup\n{ref_video},{P1},ditflow-emb\n{ref_video},{P1},inject\n")
    runs = read_manifest(tmp_path / "m.csv", setups=["backbone"], seeds=[1]).runs
    assert runs[0].error is None and "no other prompt" in runs[1].error


def test_reused_backbone_gives_the_frames_of_a_fresh_load(tiny_rope, ref_video, tmp_path, runtime):
    from helpers import extract_cfg
    from ditflow.backbones.loaded import keep_loaded
    from ditflow.config import GuideConfig
    from ditflow.stages import extract, guide

    def run(store, scheduler, seed):
        amf = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
        return guide(amf.hash, GuideConfig(prompt=P1, steps=3, guidance=False, injection=False, family={"scheduler": scheduler}, seed=seed),
                     runtime=runtime, store=store).frames

    with keep_loaded():
        run(Store(tmp_path / "a"), "dpm", 1)
        reused = run(Store(tmp_path / "b"), "ddim", 2)
    fresh = run(Store(tmp_path / "c"), "ddim", 2)
    assert (reused == fresh).all()


def test_frame_range_takes_range_start_end_step(tmp_path):
    from ditflow.video import read_range, write_video

    clip = moving_square(frames=48)
    clip[:, 0, 0, 0] = range(48)  # each frame's number in a pixel
    write_video(clip, tmp_path / "f", fmt="png")
    frames, offered = read_range(tmp_path / "f", 24, (0, 48, 2))
    assert offered == 24 and list(frames[:, 0, 0, 0]) == list(range(0, 48, 2))


def test_frame_range_past_the_end_is_refused(tmp_path, ref_video):
    from ditflow.errors import InputError
    from ditflow.video import read_range

    with pytest.raises(InputError, match="END is exclusive"):
        read_range(ref_video, 9, (0, 40, 2))


def test_frame_range_is_part_of_the_amf_hash(tiny_rope, ref_video, store, runtime):
    from dataclasses import replace

    from helpers import extract_cfg
    from ditflow.stages import extract

    whole = extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    ranged = extract(ref_video, replace(extract_cfg(tiny_rope), frame_range=(0, 9, 1)), runtime=runtime, store=store)
    assert whole.hash != ranged.hash and (whole.frames == ranged.frames).all()


def davis_tree(root: Path, clips: list[str], frames: int = 48) -> Path:
    from PIL import Image

    for clip in clips:
        folder = root / "JPEGImages" / "480p" / clip
        folder.mkdir(parents=True)
        for i, f in enumerate(moving_square(frames=frames)):
            Image.fromarray(f).save(folder / f"{i:05d}.jpg")
    return root


PROMPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "davis" / "prompts.json"


def test_davis_reader_lists_present_clips_and_the_missing(tmp_path):
    from ditflow.batch.davis import manifest_records, read_prompts

    root = davis_tree(tmp_path / "DAVIS", ["blackswan", "dog"])
    records, missing = manifest_records(root, read_prompts(PROMPTS))
    assert [Path(r["video"]).name for r in records] == ["blackswan", "dog"]
    assert records[0]["frame_range"] == [0, 48, 2] and len(records[0]["prompt"]) == 3
    assert len(missing) == 48 and "car-turn" in missing


@pytest.mark.slow
def test_make_bench_davis_runs_the_clips_present(tmp_path, tiny_rope):
    root = davis_tree(tmp_path / "DAVIS", ["blackswan"])
    args = " ".join(a for a in SIZE if a != "-q") + " -q --metrics mf"
    proc = subprocess.run(["make", "-s", "bench-davis", f"DAVIS={root}", f"MODEL={tiny_rope}", f"OUT={tmp_path / 'out'}",
                           f"PY={sys.executable}", f"CACHE={tmp_path / 'c'}", "DAVIS_SETUPS=backbone", f"ARGS={args}"],
                          cwd=PROMPTS.parents[2], capture_output=True, text=True)
    results = json.loads((tmp_path / "out" / "davis-results.json").read_text())
    assert proc.returncode == 0, proc.stderr
    assert "49 of 50 benchmark clips are not in" in proc.stderr
    assert [r["status"] for r in results] == ["ok"] * 3 and (tmp_path / "out" / "davis-report.html").is_file()


def test_the_plots_axes_are_labelled_at_round_values_inside_the_range():
    from ditflow.batch.report_svg import _label, _ticks

    ticks = _ticks(0.13, 0.92)
    assert ticks == pytest.approx([0.2, 0.4, 0.6, 0.8]) and [_label(v, 0.13, 0.92) for v in ticks] == ["0.2", "0.4", "0.6", "0.8"]
    assert [_label(v, 0.231, 0.275) for v in _ticks(0.231, 0.275)] == ["0.24", "0.25", "0.26", "0.27"]


def test_the_python_api_refuses_what_the_cli_refuses_before_any_row_runs(tmp_path, tiny_rope, ref_video, no_model):
    """run_batch checks the backend and what every row shares (here an empty guidance range) first."""
    from ditflow.batch import BatchSettings, read_manifest, run_batch
    from ditflow.config import ExtractConfig, GuideConfig
    from ditflow.errors import InputError

    (tmp_path / "runs.csv").write_text(f"video,prompt\n{ref_video},{P1}\n")
    runs = read_manifest(tmp_path / "runs.csv", setups=["ditflow-latent"], seeds=[1]).runs
    settings = BatchSettings(cache=str(tmp_path / "c"), extract=ExtractConfig(model=tiny_rope, frames=9, height=32, width=48),
                             guide=GuideConfig(steps=4, guidance_range=(50, 40)))
    with pytest.raises(InputError, match="--backend must be one of"):
        run_batch(runs, settings, backend="spark")
    with pytest.raises(InputError, match="^setup ditflow-latent: --guidance-range 50,40 selects none of the 4 steps"):
        run_batch(runs, settings)
    assert not (tmp_path / "c").exists()


def test_a_row_whose_worker_dies_twice_fails_and_the_others_run():
    from types import SimpleNamespace

    from ditflow.batch.executors import retrying

    a, b, c = (SimpleNamespace(row=i) for i in range(3))
    losses = iter([[a, b], [b]])  # a pool dies under a and b; the fresh one dies under b again
    ran, failed = [], []
    retrying([a, b, c], lambda rows: ran.append([r.row for r in rows]) or next(losses), failed.append)
    assert ran == [[0, 1, 2], [0, 1]] and failed == [b]


def test_a_killed_worker_process_loses_no_row(tmp_path, tiny_rope, monkeypatch):
    """kill -9 of the pool's worker while its rows are pending: they run again on a fresh pool and every row
    comes back with its own result (here the error of its missing video: no model needs to load)."""
    import concurrent.futures
    import os
    import signal

    from ditflow.batch import BatchSettings, executors
    from ditflow.batch.manifest import Run
    from ditflow.config import ExtractConfig, RuntimeOptions

    class KilledOnce(concurrent.futures.ProcessPoolExecutor):
        pools = 0

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            KilledOnce.pools += 1
            self.kill = KilledOnce.pools == 1

        def submit(self, *a, **kw):
            future = super().submit(*a, **kw)
            if self.kill:  # the worker dies before any of its rows is done
                self.kill = False
                for process in list(self._processes.values()):
                    os.kill(process.pid, signal.SIGKILL)
            return future

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", KilledOnce)
    runs = [Run(row=i, video=f"v{i}.mp4", path=str(tmp_path / f"v{i}.mp4"), prompt=P1, setup="backbone", seed=1)
            for i in range(3)]
    settings = BatchSettings(cache=str(tmp_path / "c"), extract=ExtractConfig(model=tiny_rope),
                             runtime=RuntimeOptions(device="cpu", quiet=True))
    results = []
    executors.run_processes(runs, settings, [None], results.append)
    assert KilledOnce.pools == 2 and sorted(r["row"] for r in results) == [0, 1, 2]
    assert all(r["status"] == "failed" and r["error"].startswith("video not found") for r in results), results


@pytest.mark.slow
def test_a_dead_ray_actor_loses_no_row(tmp_path, tiny_rope, ray_cluster, monkeypatch):
    """An actor killed under a row (os._exit, once): that row runs again on a fresh actor, every row comes back
    with its own result (the error of its missing video: no model needs to load)."""
    import os

    from ditflow.batch import BatchSettings, executors
    from ditflow.batch.manifest import Run
    from ditflow.config import ExtractConfig, RuntimeOptions

    marker = str(tmp_path / "died")

    class DiesOnce(executors.RayWorker):
        def run(self, run):
            if run.row == 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return super().run(run)

    monkeypatch.setattr(executors, "RayWorker", DiesOnce)
    runs = [Run(row=i, video=f"v{i}.mp4", path=str(tmp_path / f"v{i}.mp4"), prompt=P1, setup="backbone", seed=1)
            for i in range(3)]
    settings = BatchSettings(cache=str(tmp_path / "c"), extract=ExtractConfig(model=tiny_rope),
                             runtime=RuntimeOptions(device="cpu", quiet=True))
    results = []
    executors.run_ray(runs, settings, results.append, workers=2)
    assert os.path.exists(marker) and sorted(r["row"] for r in results) == [0, 1, 2]
    assert all(r["status"] == "failed" and r["error"].startswith("video not found") for r in results), results


def test_a_ray_address_nobody_answers_is_refused_in_seconds():
    from ditflow.batch.executors import check_reachable
    from ditflow.errors import InputError

    with pytest.raises(InputError, match="^no Ray cluster answers at --address 127.0.0.1:1"):
        check_reachable("127.0.0.1:1", timeout=2)
    with pytest.raises(InputError, match="is not HOST:PORT"):
        check_reachable("not an address")
    with pytest.raises(InputError, match="^no Ray cluster answers at --address ray://127.0.0.1 "):
        check_reachable("ray://127.0.0.1", timeout=2)  # the form the up-front check takes: Ray Client's default port


def test_an_absurd_worker_count_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch, no_model):
    from helpers import one_error_line, run_cli

    (tmp_path / "runs.csv").write_text("video,prompt\nv.mp4,x\n")
    code, _, err = run_cli(["batch", str(tmp_path / "runs.csv"), "--workers", "99999999999999999999"], capsys, monkeypatch)
    assert code == 2 and "--workers must be between 1 and 1024" in one_error_line(err)
