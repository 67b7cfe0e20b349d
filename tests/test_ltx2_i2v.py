"""LTX-2 image-to-video through its backbone adapter, on a tiny random LTX2ImageToVideoPipeline (real classes)."""
import numpy as np
import pytest
import torch

from helpers import decreases_within_each_step, moving_square, run_cli
from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.errors import InputError
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

FRAMES, HEIGHT, WIDTH = 9, 32, 64
FAST = dict(steps=4, guidance_range=(4, 2), opt_steps=3, injection=False)
RUNTIME = RuntimeOptions(device="cpu", quiet=True)


@pytest.fixture(scope="module")
def tiny_i2v(tmp_path_factory):
    from ditflow.tiny_ltx2 import build_tiny_ltx2_pipeline

    return str(build_tiny_ltx2_pipeline(tmp_path_factory.mktemp("tiny-ltx2-i2v"), i2v=True))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(reference clip, picture at the clip's size: a yellow disc on blue)."""
    from PIL import Image

    from ditflow.video import write_video

    folder = tmp_path_factory.mktemp("ltx2-i2v-files")
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    pic = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pic[...] = (30, 60, 200)
    pic[(yy - 16) ** 2 + (xx - 20) ** 2 < 81] = (250, 220, 30)
    Image.fromarray(pic).save(folder / "pic.png")
    return str(write_video(moving_square(FRAMES, HEIGHT, WIDTH), folder / "ref.gif")), str(folder / "pic.png")


@pytest.fixture(scope="module")
def i2v_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("ltx2-i2v-cache"))


@pytest.fixture(scope="module")
def i2v_amf(tiny_i2v, files, i2v_store):
    cfg = ExtractConfig(model=tiny_i2v, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,))
    return extract(files[0], cfg, runtime=RUNTIME, store=i2v_store)


def test_unguided_run_is_the_i2v_pipeline(tiny_i2v, files, i2v_amf, i2v_store):
    """The picture (H.264-recompressed at CRF 33, as the pipeline) at frame 0, timestep 0 on its tokens."""
    from diffusers import LTX2ImageToVideoPipeline
    from PIL import Image

    gen = guide(i2v_amf.hash, GuideConfig(prompt="a red circle", negative_prompt="bad quality", guidance=False,
                                          injection=False, steps=4, seed=3, cfg=3.0), image=files[1], runtime=RUNTIME,
                store=i2v_store)
    pipe = LTX2ImageToVideoPipeline.from_pretrained(tiny_i2v)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(image=Image.open(files[1]).convert("RGB"), prompt="a red circle", negative_prompt="bad quality",
               height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=4, guidance_scale=3.0,
               max_sequence_length=32, generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
    ref = (np.clip(ref, 0, 1) * 255).round().astype(np.uint8)
    diff = np.abs(gen.frames.astype(int) - ref.astype(int)).max()
    print(f"max pixel difference vs LTX2ImageToVideoPipeline: {diff}")
    assert gen.frames.shape == ref.shape and ref.std() > 0 and diff <= 2


@pytest.mark.parametrize("mode,lr", [("latent", (0.2, 0.2)), ("emb", (0.05, 0.05))])
def test_loss_falls_and_the_pictures_frame_stays(files, i2v_amf, i2v_store, mode, lr):
    gen = guide(i2v_amf.hash, GuideConfig(prompt="a red circle", opt_mode=mode, lr=lr, **FAST), image=files[1],
                runtime=RUNTIME, store=i2v_store)
    assert decreases_within_each_step(gen.losses, FAST["opt_steps"])
    plain = guide(i2v_amf.hash, GuideConfig(prompt="a red circle", guidance=False, **FAST), image=files[1],
                  runtime=RUNTIME, store=i2v_store)
    assert np.array_equal(gen.latent()[:, :, 0], plain.latent()[:, :, 0])  # latent frame 0 is the picture's


def test_frame_zero_takes_no_gradient(tiny_i2v, files):
    """A latent-mode gradient never reaches the picture's latent frame (it is pasted in every forward)."""
    from ditflow.backbones import load_backbone
    from ditflow.image import read_image

    backbone = load_backbone(tiny_i2v, "float32", RUNTIME)
    geo = backbone.geometry(FRAMES, HEIGHT, WIDTH)
    cond = backbone.condition(read_image(files[1]), geo, torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, *geo.grid, requires_grad=True)
    out = backbone.forward(backbone.guided_latent(x), torch.tensor(500.0), backbone.encode_prompt("a red circle"), geo,
                           cond=cond)
    out.square().sum().backward()
    assert x.grad[:, :, 0].abs().max() == 0 and x.grad[:, :, 1:].abs().max() > 0


def test_emb_guide_then_inject_reproduces_it(files, i2v_amf, i2v_store):
    gen = guide(i2v_amf.hash, GuideConfig(prompt="a red circle", opt_mode="emb", lr=(0.05, 0.05), **FAST),
                image=files[1], runtime=RUNTIME, store=i2v_store)
    same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=i2v_store)
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2


def test_no_image_on_the_i2v_model_is_refused(i2v_amf, i2v_store, no_model):
    with pytest.raises(InputError, match="is an image-to-video model"):
        guide(i2v_amf.hash, GuideConfig(prompt="a red circle", guidance=False, **FAST), runtime=RUNTIME, store=i2v_store)


def test_a_text_to_video_folder_animates_an_image_through_the_i2v_adapter(tmp_path):
    from ditflow.backbones import resolve_model
    from ditflow.backbones.ltx2_i2v import LTX2I2VBackbone
    from ditflow.tiny_ltx2 import build_tiny_ltx2_pipeline

    model = resolve_model(str(build_tiny_ltx2_pipeline(tmp_path / "t2v")))
    assert model.run_adapter(image=True) is LTX2I2VBackbone and model.run_adapter(image=False).needs_image is False


def test_the_i2v_chain_runs_through_the_cli_and_a_batch_row(tiny_i2v, files, tmp_path, monkeypatch, capsys):
    def call(*argv):
        code, out, err = run_cli([*argv, "--cache", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 0, err
        return out.strip()

    size = ["--model", tiny_i2v, "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks",
            "1", "-q"]
    amf = call("extract", files[0], *size)
    lat = call("guide", "--amf", amf, "-p", "a red circle", "--image", files[1], "--steps", "4", "--guidance-range",
               "4,3", "--lr", "0.2,0.2", "-q", "--out", str(tmp_path / "g.mp4"))
    emb = call("guide", "--amf", amf, "-p", "a red circle", "--image", files[1], "--opt-mode", "emb", "--steps", "4",
               "--guidance-range", "4,3", "--lr", "0.05,0.05", "-q")
    new = call("inject", "--emb", emb, "-p", "a blue square", "-q")
    assert "motion_fidelity" in call("eval", new, "--metrics", "mf", "--tracker", "lk", "--json")
    runs = tmp_path / "runs.csv"
    runs.write_text(f"video,prompt,setup,image\n{files[0]},a red circle,ditflow-emb,{files[1]}\n")
    call("batch", str(runs), *size, "--steps", "4", "--guidance-range", "4,3", "--lr", "0.05,0.05", "--metrics", "clip",
         "--csv", str(tmp_path / "results.csv"))
    assert ",ok," in (tmp_path / "results.csv").read_text() and len({amf, lat, emb, new}) == 4
