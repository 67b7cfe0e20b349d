"""Image-to-video rows of `ditflow batch`: the manifest's image and image_fit columns, the results' image,
image_fit and image_digest columns (CSV and JSON), and `ditflow report` naming the picture where it lists rows.
One batch on a tiny CogVideoX 1.0-I2V (9 frames at 32x48, 2 steps) is shared by the tests that need a model."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import HEIGHT, WIDTH, cli, one_error_line, run_cli
from ditflow.batch.manifest import read_manifest
from ditflow.store import Store

P1, P2 = "a red circle", "a blue square"
SIZE = ["--frames", "9", "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1", "--steps", "2",
        "--guidance-range", "2,1", "--opt-steps", "1", "--lr", "0.05,0.05", "--metrics", "mf", "--tracker", "lk", "-q"]
# rows: an emb run on a padded square picture, the inject row replaying it, the same picture cropped, a folder of
# frames squashed, and a picture that is not there
MANIFEST = (f"video,prompt,setup,image,image_fit\nref.gif,{P1},ditflow-emb,disc.png,pad\nref.gif,{P2},inject,disc.png,pad\n"
            f"ref.gif,{P1},backbone,disc.png,\nref.gif,{P1},backbone,frames,squash\nref.gif,{P1},backbone,missing.png,\n")


def write_picture(path: Path, height: int, width: int, colour: tuple[int, int, int]) -> Path:
    """A disc of `colour` on blue, as an RGB png."""
    import cv2

    img = np.zeros((height, width, 3), np.uint8)
    img[..., 2] = 200
    cv2.circle(img, (width // 2, height // 2), min(height, width) // 4, colour, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1])
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory, ref_video) -> Path:
    """The reference, a square picture (so crop and pad differ at 32x48), a folder of frames and the manifest."""
    root = tmp_path_factory.mktemp("batch-images")
    (root / "ref.gif").write_bytes(Path(ref_video).read_bytes())
    write_picture(root / "disc.png", 40, 40, (255, 230, 0))
    write_picture(root / "frames" / "0000.png", 32, 48, (0, 255, 0))
    (root / "runs.csv").write_text(MANIFEST)
    return root


@pytest.fixture(scope="module")
def i2v_model(tmp_path_factory) -> str:
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline

    return str(build_tiny_cogvideox_i2v_pipeline(tmp_path_factory.mktemp("cog-i2v"), variant="1.0-i2v"))


@pytest.fixture(scope="module")
def ran(work, i2v_model) -> dict:
    """The manifest's batch, once: exit code, stderr, and the rows of its CSV and JSON results."""
    code, _, err = cli(["batch", str(work / "runs.csv"), "--model", i2v_model, *SIZE, "--cache", str(work / "cache"),
                        "--csv", str(work / "out.csv"), "--json-out", str(work / "out.json")])
    with open(work / "out.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"code": code, "err": err, "csv": rows, "json": json.loads((work / "out.json").read_text())}


def fitted_digest(path: Path, fit: str) -> str:
    from ditflow.image import image_digest, load_image

    return image_digest(load_image(path, HEIGHT, WIDTH, fit).pixels)


def test_results_record_each_rows_image_as_given_its_fit_and_its_fitted_digest(ran, work):
    assert ran["code"] == 1, ran["err"]  # the row whose picture is missing
    rows = ran["json"]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"]
    assert [(r["image"], r["image_fit"]) for r in rows] == [("disc.png", "pad"), ("disc.png", "pad"), ("disc.png", "crop"),
                                                            ("frames", "squash"), ("missing.png", "crop")]
    pad, crop = fitted_digest(work / "disc.png", "pad"), fitted_digest(work / "disc.png", "crop")
    assert pad != crop
    assert [r["image_digest"] for r in rows] == [pad, pad, crop, fitted_digest(work / "frames", "squash"), None]
    store = Store(work / "cache")
    assert all(store.info(r["gen"]).meta["inputs"]["image"] == r["image_digest"] for r in rows[:4])
    assert rows[4]["error"] == "image not found: missing.png"


def test_the_csv_holds_what_the_json_holds_and_reads_back_typed(ran, work):
    from ditflow.batch.results import read_results

    as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in ran["json"]]
    assert [{k: r[k] for k in ("image", "image_fit", "image_digest")} for r in ran["csv"]] == \
           [{k: r[k] for k in ("image", "image_fit", "image_digest")} for r in as_text]
    assert read_results(work / "out.csv") == read_results(work / "out.json")
    assert read_results(work / "out.csv")[4]["image_digest"] is None


def test_the_inject_row_animates_the_picture_of_the_run_it_replays(ran, work):
    emb, injected = ran["json"][0], ran["json"][1]
    assert injected["gen"] != emb["gen"] and injected["image_digest"] == emb["image_digest"]
    assert Store(work / "cache").info(injected["gen"]).meta["inputs"]["emb"] == emb["gen"]


def test_report_names_the_picture_where_it_lists_rows(ran, work, tmp_path):
    code, out, err = cli(["report", str(work / "out.csv"), "--html", str(tmp_path / "r.html"), "--md", str(tmp_path / "r.md")])
    assert code == 0, err
    md, page = (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()
    assert "- row 5: ref.gif + image missing.png (crop) | “a red circle” | backbone | seed 1: image not found" in md
    emb = ran["json"][0]
    assert f"row 1: ref.gif + image disc.png (pad {emb['image_digest'][:12]}) | <b>ditflow-emb</b>" in page
    assert "row 4: ref.gif + image frames (squash " in page


# -- without a model ----------------------------------------------------------------------------------------
def test_image_fit_is_read_per_row_and_a_bad_one_fails_that_row_only(work):
    (work / "fits.jsonl").write_text(
        '{"video": "ref.gif", "prompt": "p", "image": "disc.png", "image_fit": "pad"}\n'
        '{"video": "ref.gif", "prompt": "p", "image": "disc.png", "image_fit": "stretch"}\n'
        '{"video": "ref.gif", "prompt": "p"}\n')
    runs = read_manifest(work / "fits.jsonl", setups=["backbone"], seeds=[1]).runs
    assert (runs[0].image, runs[0].image_path, runs[0].image_fit, runs[0].error) == (
        "disc.png", str(work / "disc.png"), "pad", None)
    assert runs[1].error == "image_fit must be one of crop, pad, squash, got 'stretch'"
    assert (runs[2].image, runs[2].image_path, runs[2].error) == (None, None, None)


def test_a_text_to_video_row_leaves_the_image_columns_empty(work):
    from ditflow.batch.runner import base_result

    (work / "plain.csv").write_text("video,prompt,image\nref.gif,p,\nref.gif,p,disc.png\n")
    plain, picture = read_manifest(work / "plain.csv", setups=["backbone"], seeds=[1]).runs
    columns = ("image", "image_fit", "image_digest")
    assert [base_result(r, "m")[k] for r in (plain, picture) for k in columns] == [None] * 3 + ["disc.png", "crop", None]


@pytest.mark.parametrize("column,value,message", [
    ("image_digest", "abc", "column image_digest: 'abc' is not an artifact hash"),
    ("image_fit", "stretch", "column image_fit: 'stretch' is not an image fit (crop, pad, squash)"),
])
def test_report_refuses_a_bad_image_cell_before_writing(tmp_path, capsys, monkeypatch, column, value, message):
    row = {"video": "v.gif", "prompt": "p", "setup": "backbone", "seed": 1, "motion_fidelity": 0.5, "status": "ok",
           "row": 1, "image": "i.png", column: value}
    (tmp_path / "r.json").write_text(json.dumps([row]))
    code, out, err = run_cli(["report", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")], capsys, monkeypatch)
    assert code == 2 and message in one_error_line(err) and not (tmp_path / "r.md").exists()


def test_results_of_an_older_batch_without_image_columns_still_read(tmp_path):
    from ditflow.batch.results import read_results

    (tmp_path / "old.csv").write_text("video,prompt,setup,seed,motion_fidelity,status,row\nv.gif,p,backbone,1,0.5,ok,1\n")
    row = read_results(tmp_path / "old.csv")[0]
    assert (row["image"], row["image_fit"], row["image_digest"]) == (None, None, None)
