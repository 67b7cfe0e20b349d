"""Issue 42, hardening: pictures and frames a user names are bounded before they are decoded (size and aspect
from the header), decoded strictly (truncated data is an error) and composited over white when transparent;
bad ones are one `error:` line with exit 2, never a traceback, a huge allocation or a hang."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line_error, deadline, moving_square, one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]


# -- inputs the tests make ------------------------------------------------------------------------------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces width x height grey pixels, with only a few bytes of data after it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + png_chunk(b"IEND", b""))
    return path


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid 1-bit side x side PNG of zeros: some tens of KB that decode to side² pixels (400 MP by default)."""
    row, deflate = b"\0" * (1 + (side + 7) // 8), zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))
    return path


def strip_png(path: Path, width: int, height: int) -> Path:
    from PIL import Image

    Image.new("L", (width, height), 128).save(path)
    return path


def photo(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth colourful picture (JPEG keeps it well)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 255 // (width + height)], -1).astype(np.uint8)


def truncated(path: Path, fmt: str) -> Path:
    from PIL import Image

    Image.fromarray(photo(96, 128)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def guide_image(amf_cache, no_model, capsys, monkeypatch):
    """`ditflow guide --image PATH [args]` on the tiny text-to-video AMF: reading the image comes before the
    model's kind is checked, so a bad picture is the first error; (exit code, stdout, stderr)."""
    cache, amf = amf_cache

    def call(path: Path, *args: str) -> tuple[int, str, str]:
        with deadline(60):
            return run_cli(["guide", "--amf", amf, "-p", "a red circle", "--image", str(path), *args, "--cache", str(cache)],
                           capsys, monkeypatch)

    return call


# -- 1. absurd sizes and aspects -----------------------------------------------------------------------------
def test_a_strip_image_with_pad_is_refused_before_any_canvas(guide_image, tmp_path):
    """A 3 KB 1x1,000,000 PNG padded to the reference's aspect was a 2.7 TiB canvas (exit 70)."""
    code, out, err = guide_image(strip_png(tmp_path / "strip.png", 1, 1_000_000), "--image-fit", "pad")
    assert_one_line_error(code, out, err, "1x1000000, an aspect of 1000000:1", exit_code=2)


def test_pad_shrinks_a_picture_whose_canvas_would_pass_the_pixel_limit(monkeypatch):
    """The pad canvas stays within MAX_PIXELS whatever the two aspects (here the limit is lowered to 10,000)."""
    import tracemalloc

    from ditflow.image import fit_image

    monkeypatch.setattr("ditflow.image.MAX_PIXELS", 10_000)
    image = np.full((8, 400, 3), 200, np.uint8)  # a canvas of 400x400 unshrunk
    tracemalloc.start()
    try:
        fitted = fit_image(image, 64, 64, "pad")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 10_000 * 3, peak
    assert fitted.pixels.shape == (64, 64, 3) and fitted.note == "image padded 400x8 to 400x400 with black bars"
    assert (fitted.pixels[28:36, 8:56].max(axis=0) > 100).all() and (fitted.pixels[:16] == 0).all()  # the strip, centred, on black


def test_viz_compare_of_a_strip_image_ends_at_once_with_one_line(ref_video, tmp_path):
    """It hung (or died with exit 70 after gigabytes): a separate process, bounded in time and memory."""
    import resource

    def bounded():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    strip = strip_png(tmp_path / "strip.png", 1_000_000, 1)
    run = subprocess.run([sys.executable, "-c", "from ditflow.cli.app import main; main()", "viz", "compare", ref_video,
                          str(strip), "--out", str(tmp_path / "cmp.mp4")], capture_output=True, text=True, timeout=120,
                         preexec_fn=bounded, cwd=tmp_path)
    assert_one_line_error(run.returncode, run.stdout, run.stderr, "1000000x1, an aspect of 1000000:1", exit_code=2)


def test_side_by_side_of_thin_allowed_pictures_stays_within_its_frame_limit():
    """A 1:50 reference beside a 50:1 picture was a frame 50 times the reference's height wide."""
    from ditflow.viz import MAX_SIDE_BY_SIDE, side_by_side, side_by_side_still

    tall, wide = np.zeros((1, 400, 8, 3), np.uint8), np.zeros((1, 8, 400, 3), np.uint8)
    frames = side_by_side([tall, wide], ["tall", "wide"])
    assert frames.shape[2] <= MAX_SIDE_BY_SIDE[1] + 4 and frames.shape[1] <= MAX_SIDE_BY_SIDE[0]
    assert side_by_side_still([tall, wide], ["tall", "wide"]).shape[1] == frames.shape[2]


def test_side_by_side_of_ordinary_videos_is_unchanged():
    from ditflow.viz import side_by_side

    assert side_by_side([moving_square(), moving_square(height=48, width=48)], ["a", "b"]).shape == (9, 16 + 32, 48 + 32, 3)


# -- 2. decompression bombs: the header's size is checked before decoding ---------------------------------------
def test_a_decompression_bomb_is_refused_from_its_header(guide_image, tmp_path):
    """20000x20000 in some tens of KB: refused before decoding (it decoded at 2.4 GB)."""
    code, out, err = guide_image(bomb_png(tmp_path / "bomb.png"))
    assert_one_line_error(code, out, err, "400 megapixels", exit_code=2)


def test_a_picture_over_the_pixel_limit_names_its_size_and_the_limit(guide_image, tmp_path):
    code, out, err = guide_image(png_of_header(tmp_path / "big.png", 7000, 6000))
    assert_one_line_error(code, out, err, "is 7000x6000 (42 megapixels); ditflow reads pictures and video frames of up to "
                                          "40 megapixels", exit_code=2)


def test_8k_is_within_the_limit_and_a_little_more_is_not():
    from ditflow.errors import InputError
    from ditflow.imagefile import MAX_PIXELS, check_frame_size

    check_frame_size(7680, 4320, "8K")
    assert MAX_PIXELS == 40_000_000
    with pytest.raises(InputError, match="41 megapixels"):
        check_frame_size(8000, 5100, "x")


def test_a_frame_of_a_reference_folder_over_the_limit_is_refused_before_decoding(tmp_path):
    from ditflow.errors import InputError
    from ditflow.video import read_video, write_video

    folder = write_video(moving_square(frames=2), tmp_path / "frames", fmt="png")
    png_of_header(folder / "0002.png", 7000, 6000)
    with pytest.raises(InputError, match="0002.png is 7000x6000 .42 megapixels"):
        read_video(folder)


@pytest.mark.parametrize("screen,message", [((8000, 6000), "8000x6000 (48 megapixels)"),
                                            ((30000, 1), "30000x1, an aspect of 30000:1")])
def test_a_gif_whose_screen_is_too_big_or_thin_is_one_line_before_decoding(screen, message, ref_video, tmp_path, capsys,
                                                                           monkeypatch):
    """A 1x1 GIF whose logical screen says 8000x6000 (Pillow decodes every frame at the screen's size), or a strip."""
    from PIL import Image

    gif = tmp_path / "big.gif"
    Image.new("P", (1, 1)).save(gif)
    gif.write_bytes(gif.read_bytes()[:6] + struct.pack("<HH", *screen) + gif.read_bytes()[10:])
    code, out, err = run_cli(["viz", "compare", ref_video, str(gif), "--out", str(tmp_path / "c.png")], capsys, monkeypatch)
    assert_one_line_error(code, out, err, f"video {gif} is {message}", exit_code=2)


def test_a_video_whose_container_announces_too_big_a_frame_is_refused_before_decoding(tmp_path, monkeypatch):
    """The mp4's own size (48x32) against a lowered limit: refused before decord or PyAV decodes a frame."""
    from ditflow.errors import InputError
    from ditflow.video import read_video, write_video

    video = write_video(moving_square(), tmp_path / "v.mp4")
    monkeypatch.setattr("ditflow.imagefile.MAX_PIXELS", 1000)
    monkeypatch.setattr("ditflow.video._read_with_decord", lambda *a: pytest.fail("frames were decoded"))
    with pytest.raises(InputError, match=r"v.mp4 is 48x32 \(0 megapixels\)"):
        read_video(video)


# -- 3. truncated and corrupt data ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_image_is_one_error_line_not_grey_fill(fmt, guide_image, tmp_path):
    path = truncated(tmp_path / f"half.{fmt.lower()}", fmt)
    code, out, err = guide_image(path)
    assert_one_line_error(code, out, err, f"cannot read --image {path}: image file is truncated", exit_code=2)


def test_truncated_data_stays_an_error_when_pillow_leniency_was_turned_on(tmp_path, monkeypatch):
    """LOAD_TRUNCATED_IMAGES is process-wide: whoever turned it on, an --image is still decoded strictly."""
    from PIL import ImageFile

    from ditflow.errors import InputError
    from ditflow.image import read_image

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InputError, match="half.jpg: image file is truncated"):
        read_image(truncated(tmp_path / "half.jpg", "JPEG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as it was found


def test_a_file_that_is_no_picture_is_one_error_line(guide_image, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n")  # not handed to a decoder of another kind (EPS runs Ghostscript)
    code, out, err = guide_image(bad)
    assert_one_line_error(code, out, err, "cannot read --image", exit_code=2)


# -- 4. transparency ------------------------------------------------------------------------------------------
def transparent_png(path: Path, mode: str) -> Path:
    """Left half fully transparent over hidden red, right half opaque blue (RGBA), or the like in LA / P."""
    from PIL import Image

    if mode == "P":
        image = Image.new("P", (8, 4), 0)
        image.putpalette([255, 0, 0, 0, 0, 255])
        image.paste(1, (4, 0, 8, 4))
        image.save(path, transparency=0)
        return path
    rgba = np.zeros((4, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 0)
    rgba[:, 4:] = (0, 0, 255, 255)
    image = Image.fromarray(rgba)
    (image.convert("LA") if mode == "LA" else image).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_over_white_with_a_note(mode, tmp_path):
    from ditflow.image import load_image

    fitted = load_image(transparent_png(tmp_path / "t.png", mode), 4, 8)
    assert (fitted.pixels[:, :4] == 255).all()  # white, not the hidden red
    assert (fitted.pixels[:, 4:, 2] > 0).all() and (fitted.pixels[:, 4:] < 255).any()
    assert fitted.note == "image has transparent pixels: composited over white"


def test_half_transparent_pixels_blend_with_white(tmp_path):
    from PIL import Image

    from ditflow.image import read_image

    Image.fromarray(np.full((2, 2, 4), (0, 0, 0, 128), np.uint8)).save(tmp_path / "half.png")
    assert (read_image(tmp_path / "half.png") == 127).all()  # 0·128/255 + 255·127/255


def test_the_transparency_note_reaches_stderr(guide_image, tmp_path):
    code, out, err = guide_image(transparent_png(tmp_path / "t.png", "RGBA"))
    assert "note: image has transparent pixels: composited over white" in err and code == 2  # then: a text-to-video model


def test_an_opaque_rgba_picture_keeps_its_pixels_and_says_nothing(tmp_path):
    from PIL import Image

    from ditflow.image import load_image

    Image.fromarray(photo()).convert("RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(photo()).save(tmp_path / "rgb.png")
    a, b = load_image(tmp_path / "opaque.png", 32, 48), load_image(tmp_path / "rgb.png", 32, 48)
    assert np.array_equal(a.pixels, b.pixels) and a.note == b.note  # no word of transparency


def test_the_image_help_says_the_limits_and_the_compositing():
    from ditflow.image import IMAGE_HELP

    assert "40 megapixels" in IMAGE_HELP and "50:1" in IMAGE_HELP and "over white" in IMAGE_HELP
    assert IMAGE_HELP in (ROOT / "docs" / "cli.md").read_text()


# -- the pixels of ordinary pictures (and so every image digest) are what OpenCV decoded ------------------------
def ordinary_pictures(folder: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    noise = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    orientation = Image.Exif()
    orientation[0x0112] = 6  # a phone photo held upright: shown rotated
    saves = {"rgb.png": (noise, {}), "grey.png": (noise[..., 0], {}), "q.jpg": (photo(), {"quality": 90}),
             "prog.jpg": (photo(), {"progressive": True}), "b.bmp": (noise, {}), "l.webp": (noise, {"lossless": True}),
             "y.webp": (photo(), {"quality": 80}), "turned.jpg": (photo(), {"exif": orientation.tobytes()})}
    for name, (pixels, kw) in saves.items():
        Image.fromarray(pixels).save(folder / name, **kw)
    Image.fromarray(noise).convert("P").save(folder / "palette.png")
    Image.fromarray((rng.random((37, 53)) * 65535).astype(np.uint16)).save(folder / "grey16.png")
    return sorted(folder.iterdir())


def test_ordinary_pictures_decode_to_the_pixels_opencv_gave(tmp_path):
    import cv2

    from ditflow.image import read_image

    for path in ordinary_pictures(tmp_path):
        assert np.array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]), path.name


@pytest.mark.parametrize("fit,digest", [
    ("crop", "54364903a9e1ee34335d0e4b5e9199b5af6e00ddd4d88d774370ea01b3f1ab4f"),
    ("pad", "ec5b4f3b2948a35537e8efc7658ae582884ad7b6072482b0f3121e13871d6181"),
    ("squash", "ee51941c583d63867e68774411b10a8c6d2230be9d3bbcfd02be8934e50ec625")])
def test_the_demo_image_keeps_its_digests(fit, digest):
    from ditflow.image import image_digest, load_image

    assert image_digest(load_image(ROOT / "assets" / "toy-image.png", 32, 48, fit).pixels) == digest


# -- 5. files that are no regular file ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_as_image_is_refused_without_opening_it(kind, guide_image, tmp_path):
    path = tmp_path / "x.png"
    os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/zero")
    code, out, err = guide_image(path)
    assert_one_line_error(code, out, err, "is not a regular file", exit_code=2)


def test_a_fifo_named_like_an_image_in_viz_compare_is_refused(ref_video, tmp_path, capsys, monkeypatch):
    os.mkfifo(tmp_path / "x.png")
    with deadline(60):
        code, out, err = run_cli(["viz", "compare", ref_video, str(tmp_path / "x.png"), "--out", str(tmp_path / "c.png")],
                                 capsys, monkeypatch)
    assert code == 2 and "is not a regular file" in one_error_line(err)
