"""ditflow viz: flow colours, AMF pictures, side-by-side videos, loss plots and their commands."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ditflow.errors import InputError
from ditflow.video import read_video, write_video
from ditflow.viz import (color_wheel, flow_to_rgb, free_path, latent_to_pixel_frame, parse_pairs, side_by_side)
from helpers import run_cli

T, H, W = 9, 48, 64  # pixel frames of the synthetic reference
GRID = (3, 3, 4)  # latent frames, patch rows, patch columns (16 px patches)


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's hue of uint8 RGB pixels, in degrees."""
    import cv2

    return cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV)[..., 0].ravel().astype(float) * 2


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in an empty folder (default output names land there) with an empty cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DITFLOW_CACHE", str(tmp_path / "cache"))


def frames(n: int = T, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def make_artifacts() -> tuple[str, str]:
    """An amf artifact whose AMF moves every patch one patch right per latent frame, and a gen artifact with losses."""
    import torch

    from ditflow.artifacts import write_amf, write_gen
    from ditflow.store import Store, content_key

    store = Store()
    f, h, w = GRID
    amf = torch.zeros(f, f, h * w, 2)
    for i in range(f):
        for j in range(f):
            amf[i, j, :, 0] = j - i
    amf_inputs = {"blocks": [7, 9], "model": {"name": "test"}}
    amf_hash = content_key("amf", amf_inputs)  # the store checks an object's name against its inputs
    with store.writer(amf_hash, "amf", inputs=amf_inputs, extra={"grid": list(GRID)}) as d:
        write_amf(d, frames=frames(), latent=torch.zeros(1, f, 4, h * 2, w * 2), amf={7: amf, 9: -amf}, features={}, moft={})
    losses = [{"step": s, "timestep": 999 - 50 * s, "opt_step": k, "lr": 0.01, "loss": 1.0 / (1 + k + s)} for s in range(3) for k in range(5)]
    gen_hash = content_key("gen", {})
    with store.writer(gen_hash, "gen", inputs={}, parents=[amf_hash], extra={"settings": {"prompt": "x"}, "losses": losses}) as d:
        write_gen(d, frames=frames(seed=1), latent=torch.zeros(1, f, 4, h * 2, w * 2), embeddings={})
    return amf_hash, gen_hash


# -- pure functions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dx,dy,hue", [(1, 0, 0), (0, 1, 90), (-1, 0, 180), (0, -1, 270), (1, 1, 45)])
def test_uniform_flow_has_the_hue_of_its_direction(dx, dy, hue):
    flow = np.tile(np.array([dx, dy], np.float32), (4, 5, 1))
    rgb = flow_to_rgb(flow)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    got = hue_degrees(rgb)
    assert np.all(np.abs((got - hue + 180) % 360 - 180) <= 2)
    assert (rgb.max(-1) == 255).all() and (rgb.min(-1) == 0).all()  # fully saturated at the largest magnitude


def test_rightward_is_red_and_no_motion_is_white():
    rgb = flow_to_rgb(np.array([[[2.0, 0.0], [0.0, 0.0], [1.0, 0.0]]]))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (255, 255, 255)
    assert rgb[0, 2, 1] > 100  # half the magnitude: half saturated (pink, not red)


def test_color_wheel_matches_flow_colours():
    wheel = color_wheel(41)
    assert wheel.shape == (41, 41, 3)
    assert tuple(wheel[20, 40]) == tuple(flow_to_rgb(np.array([1.0, 0.0]), 1.0))  # right edge = rightward
    assert tuple(wheel[0, 0]) == (255, 255, 255)  # outside the disc


def test_latent_frames_map_to_pixel_frames():
    assert [latent_to_pixel_frame(i, 13, 49) for i in (0, 1, 12)] == [0, 4, 48]
    assert latent_to_pixel_frame(0, 1, 5) == 0


def test_parse_pairs():
    assert parse_pairs(None, 4) == [(0, 1), (0, 2), (0, 3)]
    assert parse_pairs("0-1, 2-0", 3) == [(0, 1), (2, 0)]
    with pytest.raises(InputError, match="out of range"):
        parse_pairs("0-5", 3)
    with pytest.raises(InputError):
        parse_pairs("0to1", 3)


def test_side_by_side_cuts_to_shortest_and_matches_heights():
    out = side_by_side([frames(9, 48, 64), frames(6, 24, 40), frames(7, 96, 96)], ["ref", "a", "b"])
    # widths: 64, 40·2 = 80, 96/2 = 48; header on top
    assert out.shape[0] == 6 and out.shape[2] == 64 + 80 + 48 and out.shape[1] > 48
    assert out.shape[1] % 2 == 0 and out.shape[2] % 2 == 0
    with pytest.raises(InputError):
        side_by_side([frames()], ["a", "b"])


def test_free_path_never_reuses_a_name(tmp_path):
    p = tmp_path / "x.gif"
    assert free_path(p) == p
    p.write_bytes(b"")
    assert free_path(p) == tmp_path / "x-1.gif"


# -- commands ------------------------------------------------------------------------------------------


def test_viz_amf_writes_one_picture_per_pair(capsys, monkeypatch):
    amf_hash, _ = make_artifacts()
    code, out, err = run_cli(["viz", "amf", amf_hash[:8]], capsys, monkeypatch)
    assert code == 0, err
    path = Path(out.strip())
    assert path == Path.cwd() / f"amf-{amf_hash[:12]}-b7.gif"
    pics = read_video(path)
    assert pics.shape[0] == GRID[0] - 1 and pics.shape[2] == 2 * W and pics.shape[1] > H
    # right half is the flow colour: patches move right -> red hue where the wheel legend is not
    flow_half = pics[0, -H // 2:, W:W + W // 2]
    assert np.median(np.abs((hue_degrees(flow_half) + 180) % 360 - 180)) <= 4

    code, out, _ = run_cli(["viz", "amf", amf_hash, "--block", "9", "--pairs", "1-0", "--out", "m.mp4"], capsys, monkeypatch)
    assert code == 0 and read_video(out.strip()).shape[0] == 1
    code, out2, _ = run_cli(["viz", "amf", amf_hash[:8]], capsys, monkeypatch)
    assert code == 0 and out2.strip().endswith(f"amf-{amf_hash[:12]}-b7-1.gif")  # no silent overwrite
    code, _, err = run_cli(["viz", "amf", amf_hash, "--block", "3"], capsys, monkeypatch)
    assert code != 0 and err.startswith("error:") and "blocks 7, 9" in err


def test_viz_amf_png_is_one_still_grid_of_every_pair(capsys, monkeypatch):
    import imageio.v3 as iio

    from ditflow.artifacts import load
    from ditflow.store import Store
    from ditflow.viz import amf_pictures, parse_pairs

    amf_hash, _ = make_artifacts()
    code, out, err = run_cli(["viz", "amf", amf_hash[:8], "--out", "pairs.png"], capsys, monkeypatch)
    assert code == 0, err
    still = iio.imread(out.strip())
    art = load(Store(), amf_hash, "amf")
    pics = amf_pictures(art.frames, art.amf(7).numpy(), art.grid, parse_pairs(None, art.grid[0]),
                        title=f"AMF {amf_hash[:12]} block 7")
    n, h, w = pics.shape[:3]  # GRID[0] - 1 pairs, in ceil(sqrt(n)) columns with 4-pixel gaps on white
    cols = int(np.ceil(np.sqrt(n)))
    assert still.shape == ((-(-n // cols)) * (h + 4) - 4, cols * (w + 4) - 4, 3)
    assert np.array_equal(still[:h, :w], pics[0]) and np.array_equal(still[:h, w + 4: 2 * w + 4], pics[1])
    code, _, err = run_cli(["viz", "amf", amf_hash[:8], "--out", "pairs.png"], capsys, monkeypatch)
    assert code != 0 and "already exists" in err  # no silent overwrite


def test_viz_compare_png_is_a_still_of_four_frames(capsys, monkeypatch):
    import imageio.v3 as iio

    amf_hash, gen_hash = make_artifacts()
    code, out, err = run_cli(["viz", "compare", amf_hash, gen_hash, "--out", "strip.png"], capsys, monkeypatch)
    assert code == 0, err
    code, video, _ = run_cli(["viz", "compare", amf_hash, gen_hash, "--out", "strip.gif"], capsys, monkeypatch)
    still, frames = iio.imread(out.strip()), read_video(video.strip())
    from ditflow.artifacts import load
    from ditflow.store import Store

    h = load(Store(), amf_hash).frames.shape[1]  # the labels over it are shown once, then 4 frames, 4 px apart
    assert still.shape[1] == frames.shape[2] and still.shape[0] == frames.shape[1] + 3 * (h + 4)


def test_viz_amf_of_a_gen_artifact_is_one_error_line(capsys, monkeypatch):
    _, gen_hash = make_artifacts()
    code, out, err = run_cli(["viz", "amf", gen_hash], capsys, monkeypatch)
    assert code != 0 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith("error:") and "not 'amf'" in err


def test_viz_compare_shows_an_image_file_as_a_still_beside_every_frame(tmp_path, capsys, monkeypatch):
    """reference | image | result: the image-to-video picture stands for the whole clip."""
    import cv2

    amf_hash, gen_hash = make_artifacts()
    cv2.imwrite(str(tmp_path / "pic.png"), np.full((H, W, 3), 77, np.uint8))
    code, out, err = run_cli(["viz", "compare", amf_hash, str(tmp_path / "pic.png"), gen_hash, "--out",
                              str(tmp_path / "cmp.gif")], capsys, monkeypatch)
    assert code == 0, err
    video = read_video(out.strip())
    assert video.shape[0] == T and video.shape[2] == 3 * W
    assert (video[:, -H // 2:, W + 2:2 * W - 2] == video[0, -H // 2:, W + 2:2 * W - 2]).all()  # the still does not move


def test_viz_compare_mixes_files_and_hashes(tmp_path, capsys, monkeypatch):
    amf_hash, gen_hash = make_artifacts()
    write_video(frames(12, 32, 32, seed=3), tmp_path / "other", fmt="png")
    code, out, err = run_cli(["viz", "compare", amf_hash, gen_hash, str(tmp_path / "other"), "--labels", "ref,ditflow,other"],
                             capsys, monkeypatch)
    assert code == 0, err
    path = Path(out.strip())
    assert path.name == "compare-ditflow.mp4"
    video = read_video(path)
    assert video.shape[0] == T and video.shape[2] == W + W + H  # the square video is resized to height 48
    code, _, err = run_cli(["viz", "compare", amf_hash, gen_hash, "--labels", "just-one"], capsys, monkeypatch)
    assert code != 0 and "labels" in err


def test_viz_loss_writes_a_png(capsys, monkeypatch):
    amf_hash, gen_hash = make_artifacts()
    code, out, err = run_cli(["viz", "loss", gen_hash[:8]], capsys, monkeypatch)
    assert code == 0, err
    path = Path(out.strip())
    assert path.name == f"loss-{gen_hash[:12]}.png"
    import imageio.v3 as iio

    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    code, _, err = run_cli(["viz", "loss", gen_hash[:8], "--out", str(path)], capsys, monkeypatch)
    assert code != 0 and "already exists" in err
    code, _, err = run_cli(["viz", "loss", amf_hash], capsys, monkeypatch)
    assert code != 0 and "not 'gen'" in err
