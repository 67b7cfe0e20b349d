"""The toy model's recipe runs, checkpoints, resumes and exports a pipeline the toolkit loads.

Training is the slow part, so a tiny recipe is trained once (`trained`) and the tests that need more runs start
from copies of its work folder or from its exported pipeline."""
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ditflow.errors import ArtifactNotFound, IncompatibleArtifact, InputError
from ditflow.progress import Progress
from ditflow.toyworld.checkpoints import check_work
from ditflow.toyworld.model import build
from ditflow.toyworld.recipes import RECIPES, Recipe, stored_recipe
from ditflow.toyworld.train import export_checkpoint, main, prepare, train
from ditflow.toyworld.world import COARSE_SHAPES, make_clip

TINY = replace(Recipe(), shape_weight=2.0, size=32, frames=9, vae_channels=(8, 8, 8), latent_channels=4, patch=2, heads=2, head_dim=16, layers=2,
               vae_steps=2, vae_batch=1, steps=2, batch=2, checkpoint_every=1, bank=40, decoder_steps=2, object_weight_from=1, text_from=1,
               text_steps=2, text_batch=4,
               defaults={"guidance_blocks": [1], "frames": 9, "height": 32, "width": 32, "cfg": 2.5, "steps": 4})


def state(work: Path, name: str) -> dict:
    return json.loads((work / f"{name}.json").read_text())


def copy_work(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """TINY trained once: (work folder, exported pipeline). Tests must not write into either."""
    root = tmp_path_factory.mktemp("trained")
    out = train(TINY, root / "work", root / "toy", quiet=True)
    return root / "work", out


def test_every_stage_checkpoints_its_step_count(trained):
    work, _ = trained
    assert {s: state(work, s)["step"] for s in ("vae", "text_pretrain", "transformer", "decoder")} == \
        {"vae": 2, "text_pretrain": 2, "transformer": 2, "decoder": 2}


def test_the_bank_holds_shape_ambiguity_when_the_recipe_weighs_it(trained):
    from safetensors.torch import load_file

    bank = load_file(str(trained[0] / "latents.safetensors"))
    assert state(trained[0], "latents")["size"] == TINY.bank
    assert bank["ambiguity"].shape == bank["masks"].shape and 0 < bank["ambiguity"].max() <= 1


def test_the_export_is_a_pipeline_the_toolkit_extracts_with(trained, tmp_path, runtime, store):
    from ditflow.config import ExtractConfig
    from ditflow.stages import extract
    from ditflow.video import write_video

    out = trained[1]
    assert (out / "ditflow.json").is_file() and (out / "model_index.json").is_file()
    ref = write_video(make_clip(1, 9, 32, 32).frames, tmp_path / "ref.gif")
    amf = extract(ref, ExtractConfig(model=str(out)), runtime=runtime, store=store)  # sizes from ditflow.json
    assert amf.grid == (3, 4, 4) and amf.blocks == [1]
    assert np.isfinite(amf.amf(1).numpy()).all()


def test_a_resume_trains_only_the_missing_steps_and_reuses_the_bank(trained, tmp_path):
    work = copy_work(trained[0], tmp_path / "work")
    stamp = (work / "latents.safetensors").stat().st_mtime_ns
    train(replace(TINY, steps=3), work, tmp_path / "toy", quiet=True)
    assert state(work, "transformer")["step"] == 3
    assert (work / "latents.safetensors").stat().st_mtime_ns == stamp  # not encoded again


def test_a_deadline_cuts_stage_2_and_the_export_records_the_count(trained, tmp_path):
    import time

    work, out = copy_work(trained[0], tmp_path / "work"), tmp_path / "toy"
    train(replace(TINY, steps=500), work, out, quiet=True, deadline=time.time() + 1.0)  # far fewer than 500 fit
    cut = state(work, "transformer")
    assert 2 < cut["step"] == cut["planned"] < 500
    assert json.loads((out / "recipe.json").read_text())["steps"] == cut["step"]


def test_export_only_without_a_transformer_checkpoint_says_so(tmp_path):
    with pytest.raises(ArtifactNotFound, match="no transformer checkpoint"):
        main(["--export-only", "--recipe", "v4", "--work", str(tmp_path), "--out", str(tmp_path / "toy")])


@pytest.mark.slow
def test_a_prepared_bank_is_reused_by_a_recipe_that_differs_in_the_transformer(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    prepare(TINY, a, quiet=True)
    assert state(a, "latents")["size"] == TINY.bank and not (a / "transformer.json").exists()
    copy_work(a, b)
    (b / "recipe.json").unlink()
    stamp = (b / "latents.safetensors").stat().st_mtime_ns
    train(replace(TINY, layers=3), b, tmp_path / "toy", quiet=True)
    assert (b / "latents.safetensors").stat().st_mtime_ns == stamp  # not encoded again
    assert state(b, "transformer")["step"] == TINY.steps


# ------------------------------------------------------------------ init_from / vae_from (how v9 is trained)
def adopting(source: Path) -> Recipe:
    """v9's way on TINY: stage 2 from a trained pipeline's weights, bf16 autocast, noise from its own generator."""
    return replace(TINY, init_from=str(source), vae_from=str(source), steps=0, text_steps=50, amp=True, device_noise=True)


@pytest.fixture(scope="module")
def adopted(trained, tmp_path_factory) -> tuple[Path, Path]:
    """`adopting(trained pipeline)` at zero steps: (work folder, export); its transformer is the source's."""
    root = tmp_path_factory.mktemp("adopted")
    return root / "work", train(adopting(trained[1]), root / "work", root / "toy", quiet=True)


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_starts_stage_2_from_the_pipeline_at_its_scaling(trained, adopted):
    from diffusers import CogVideoXTransformer3DModel

    source, (work, out) = trained[1], adopted
    start = state(work, "transformer")
    assert start["from"] == str(source) and start["step"] == 0
    assert start["scaling"] == json.loads((source / "vae" / "config.json").read_text())["scaling_factor"]
    assert state(work, "text_pretrain")["step"] == 50  # stage 1b not run
    a, b = (CogVideoXTransformer3DModel.from_pretrained(f / "transformer").state_dict() for f in (source, out))
    assert weights_equal(a, b)


def test_export_only_of_an_adopted_work_folder_carries_the_source_text_encoder(trained, adopted, tmp_path):
    """Stage 2 saved no T5 of its own at zero steps: the export takes the one init_from gave stage 1b."""
    from transformers import T5EncoderModel

    again = export_checkpoint(adopting(trained[1]), adopted[0], tmp_path / "toy")
    a, b = (T5EncoderModel.from_pretrained(f / "text_encoder").state_dict() for f in (trained[1], again))
    assert weights_equal(a, b)


def test_an_adopted_model_trains_on_under_bf16_and_device_noise(trained, adopted, tmp_path):
    work = copy_work(adopted[0], tmp_path / "work")
    train(replace(adopting(trained[1]), steps=1), work, tmp_path / "toy", quiet=True)
    after = state(work, "transformer")
    assert after["step"] == 1 and np.isfinite(after["loss"])


@pytest.mark.slow
def test_init_from_refuses_another_transformer_or_another_vae_folder(trained, tmp_path):
    with pytest.raises(IncompatibleArtifact, match="num_layers"):
        train(replace(adopting(trained[1]), layers=3), tmp_path / "w2", tmp_path / "x", quiet=True)
    with pytest.raises(InputError, match="same folder"):
        train(replace(adopting(trained[1]), vae_from=None), tmp_path / "w3", tmp_path / "x", quiet=True)


def test_a_recipe_can_take_its_vae_from_a_trained_model(tmp_path):
    """vae_from: stages 1 and 3 copy that folder's VAE, so a world of other shapes skips them."""
    from ditflow.toyworld.stages import train_vae

    source = build(TINY)[2]
    torch.nn.init.normal_(source.decoder.conv_out.conv.weight)  # not the seed's init: the copy must be of these
    source.save_pretrained(tmp_path / "src" / "vae")
    recipe = replace(TINY, vae_from=str(tmp_path / "src"))
    vae = build(recipe)[2]
    (tmp_path / "work").mkdir()
    train_vae(recipe, vae, tmp_path / "work", "cpu", Progress(True))
    assert torch.equal(vae.decoder.conv_out.conv.weight, source.decoder.conv_out.conv.weight)
    for stage in ("vae", "decoder"):
        assert state(tmp_path / "work", stage)["from"] == str(tmp_path / "src")
    (tmp_path / "w2").mkdir()
    with pytest.raises(InputError, match="no vae/ folder"):
        train_vae(replace(TINY, vae_from=str(tmp_path / "nowhere")), build(TINY)[2], tmp_path / "w2", "cpu", Progress(True))


# ------------------------------------------------------------------------------ stages and data, alone
@pytest.mark.slow
def test_text_stage_teaches_every_token_the_parse(tmp_path):
    """Stage 1b alone, briefly: the worst of its six probes beats chance by far (all tokens, pads included)."""
    from ditflow.toyworld.stages import train_text

    recipe = replace(Recipe(), text_steps=300, checkpoint_every=300)
    tokenizer, text_encoder = build(recipe)[:2]
    train_text(recipe, tokenizer, text_encoder, tmp_path, "cpu", Progress(True))
    assert state(tmp_path, "text_pretrain")["step"] == 300
    assert state(tmp_path, "text_pretrain")["worst_accuracy"] > 0.6  # chance: 1/12 colours, 1/3 kinds


def test_scene_prompt_matches_the_rendered_clip_and_parses():
    from ditflow.toyworld.stages import parse_labels
    from ditflow.toyworld.world import scene_prompt

    seeds = range(10_000, 10_200)
    prompts = [scene_prompt(s) for s in seeds]
    assert prompts == [make_clip(s, 5, 16, 16).prompt for s in seeds]  # no rendering needed for stage 1b
    labels = parse_labels(prompts)
    assert labels.shape == (200, 6) and (labels[:, 2] < 11).any() and (labels[:, 2] == 11).any()  # 1 and 2 objects


def test_recipe_shapes_reach_clips_prompts_and_vocabulary():
    from ditflow.toyworld.data import clip_batch
    from ditflow.toyworld.stages import parse_labels

    recipe = replace(TINY, shapes=COARSE_SHAPES)
    _, prompts = clip_batch(recipe, 0, 40, stage=1)
    words = {w for p in prompts for w in p.split()}
    assert words & {"bar", "column"} and not words & {"square", "diamond", "cross"}
    assert (parse_labels(prompts, COARSE_SHAPES)[:, 1] < len(COARSE_SHAPES)).all()
    tokenizer = build(recipe)[0]
    assert tokenizer.unk_token_id not in tokenizer("a red bar and a blue column on a grey background").input_ids


def test_recipe_object_radius_reaches_the_training_clips():
    from ditflow.toyworld.data import clip_batch

    small, _ = clip_batch(replace(TINY, object_radius=(0.1, 0.1)), 0, 1, stage=1)
    big, _ = clip_batch(replace(TINY, object_radius=(0.3, 0.3)), 0, 1, stage=1)
    assert not np.array_equal(small.numpy(), big.numpy())


def test_latent_masks_cover_each_latent_frame_group():
    from ditflow.toyworld.data import latent_mask

    clip = make_clip(5, 9, 32, 32)
    m = latent_mask(clip, spatial=4)
    assert m.shape == (3, 8, 8) and 0 < m.max() <= 1
    # latent frame 1 covers pixel frames 1-4: anywhere the object is in one of them
    union = clip.masks.any(axis=0)[1:5].any(axis=0).reshape(8, 4, 8, 4).mean(axis=(1, 3))
    assert np.allclose(m[1], union)


def test_bank_rendered_by_worker_processes_is_the_same(tmp_path):
    from ditflow.toyworld.data import latent_bank

    vae = build(TINY)[2].eval()
    banks = []
    for workers in (0, 2):
        (tmp_path / str(workers)).mkdir()
        banks.append(latent_bank(TINY, vae, 1.0, tmp_path / str(workers), "cpu", Progress(quiet=True), workers))
    one, two = banks
    assert one[1] == two[1] and len(one[1]) == TINY.bank  # prompts, in order
    for a, b in zip((one[0], one[2], one[3]), (two[0], two[2], two[3])):
        assert a.shape[0] == TINY.bank and np.array_equal(a.numpy(), b.numpy())


def test_stage_2_draws_what_the_shipped_models_drew():
    """Golden values: a change in draw_batch's order or use of the generator would keep v8 and v9 from
    reproducing (their recipes name step counts, not these draws)."""
    from ditflow.toyworld.diffusion import draw_batch

    idx, empty, t, noise = draw_batch(replace(TINY, batch=4), torch.Generator().manual_seed(3), 40, (3, 4, 2, 2))
    assert idx.tolist() == [26, 8, 17, 27] and empty.tolist() == [False, True, False, False]
    assert t.tolist() == [659, 908, 528, 835] and noise.shape == (4, 3, 4, 2, 2)
    _, _, _, device_noise = draw_batch(replace(TINY, batch=3), torch.Generator().manual_seed(0), 40, (2, 2),
                                       torch.Generator().manual_seed(5))
    assert torch.equal(device_noise, torch.randn((3, 2, 2), generator=torch.Generator().manual_seed(5)))  # its own


def test_ema_step_follows_the_decay_and_copies_at_zero():
    from ditflow.toyworld.diffusion import ema_step

    module = torch.nn.Linear(2, 2)
    ema = {k: torch.zeros_like(v) for k, v in module.state_dict().items()}
    ema_step(ema, module, 0.75)
    assert torch.allclose(ema["weight"], 0.25 * module.weight.detach())
    ema_step(ema, module, 0.0)
    assert torch.equal(ema["weight"], module.weight.detach())


def test_warm_up_ramps_the_learning_rate_then_the_cosine_ends_at_zero():
    from ditflow.toyworld.diffusion import lr_factor

    ramp = [lr_factor(s, 100, 4) / lr_factor(s, 100) for s in range(5)]  # the warm-up's share of the factor
    assert np.allclose(ramp, [0.25, 0.5, 0.75, 1.0, 1.0])
    assert lr_factor(0, 100) == 1.0 and lr_factor(100, 100, 4) == 0.0 and lr_factor(50, 100) == 0.5


def test_step_plan_keeps_the_count_without_a_deadline_and_stops_at_the_deadline():
    import time

    from ditflow.toyworld.loop import StepPlan

    plan = StepPlan(100, None, probe=3)
    assert not any(plan.tick(s, 0) for s in range(100)) and plan.total == 100
    late = StepPlan(100, time.time() - 10, probe=3)  # already past: the second step is the last
    assert [late.tick(s, 0) for s in range(2)] == [False, True] and late.total == 2
    now = [0.0]  # a clock the test moves: 0.125 s a step, then the machine slows down past the deadline
    slow = StepPlan(100, 10.0, probe=3, clock=lambda: now[0])
    for s in range(3):
        now[0] += 0.125
        slow.tick(s, 0)
    assert slow.total == 3 + 77  # planned at the probe: (10 - 0.375) / 0.125 more steps fit
    now[0] = 11.0
    assert slow.tick(3, 0) and slow.total == 4  # past the deadline: this step is the last


def test_resumable_loop_starts_at_the_checkpoint_and_saves_when_due():
    from ditflow.toyworld.loop import StepPlan, run

    ran, saved = [], []
    total = run(Progress(True), "test", 3, StepPlan(8), 2, lambda s: ran.append(s) or torch.tensor(0.0),
                lambda s, loss: saved.append(s))
    assert total == 8 and ran == [3, 4, 5, 6, 7] and saved == [3, 5, 7]  # every 2nd step (1-based) and the last


# ------------------------------------------------------------------------------ recipes and work folders
def test_the_shipped_model_is_v9s_recipe():
    shipped = json.loads((Path(__file__).resolve().parents[1] / "assets/toy-cogvideox/recipe.json").read_text())
    assert stored_recipe(shipped) == json.loads(json.dumps(asdict(RECIPES["v9"])))  # make toy-model reproduces what ships


def test_the_shipped_models_guidance_defaults_are_v9s():
    from ditflow.toyworld.recipes import V9_DEFAULTS

    shipped = json.loads((Path(__file__).resolve().parents[1] / "assets/toy-cogvideox/ditflow.json").read_text())
    assert shipped == json.loads(json.dumps(V9_DEFAULTS))  # an export writes ditflow.json from the recipe


def test_no_recipe_reads_the_folder_make_toy_model_writes():
    """`make toy-model` exports into assets/toy-cogvideox: a recipe reading it would read its own output."""
    from ditflow.toyworld.model import recipe_folder

    shipped = recipe_folder("assets/toy-cogvideox")
    for name, recipe in RECIPES.items():
        assert shipped not in {recipe_folder(f) for f in (recipe.vae_from, recipe.init_from) if f}, name


def test_recipe_refuses_sizes_the_patch_grid_cannot_tile():
    with pytest.raises(ValueError, match="multiple of 12"):
        replace(Recipe(), patch=3)  # 64 px: VAE factor 4 x patch 3 = 12 does not divide it
    with pytest.raises(ValueError, match="4k \\+ 1"):
        replace(Recipe(), frames=16)


def write_recipe(work: Path, recipe: dict) -> None:
    work.mkdir(exist_ok=True)
    (work / "recipe.json").write_text(json.dumps(recipe))


def test_resume_refuses_checkpoints_of_another_recipe(tmp_path):
    write_recipe(tmp_path, asdict(TINY))
    check_work(replace(TINY, steps=10, vae_steps=5), tmp_path)  # longer runs resume the same model
    with pytest.raises(IncompatibleArtifact, match="latent_channels"):
        check_work(replace(TINY, latent_channels=8), tmp_path)


def test_resume_accepts_work_folders_from_before_the_patch_setting(tmp_path):
    old = json.loads(json.dumps(asdict(Recipe())))
    del old["patch"]  # v4's recipe.json
    write_recipe(tmp_path, old)
    check_work(Recipe(), tmp_path)  # no error


def test_resume_reads_recipes_from_before_the_shape_weight_as_unweighted(tmp_path):
    old = json.loads(json.dumps(asdict(TINY)))
    del old["shape_weight"]  # v4's recipe.json
    write_recipe(tmp_path, old)
    check_work(replace(TINY, shape_weight=0.0), tmp_path)  # they trained without it
    with pytest.raises(IncompatibleArtifact, match="shape_weight"):
        check_work(replace(TINY, shape_weight=2.0), tmp_path)


def test_retired_stage_2b_settings_are_ignored_only_where_it_never_ran(tmp_path):
    inert = {**json.loads(json.dumps(asdict(TINY))), "tune_steps": 0, "tune_lr": 1e-4, "tune_region": "object"}
    write_recipe(tmp_path / "a", inert)
    check_work(TINY, tmp_path / "a")  # a v8 or v9 work folder: its recipe.json has them, at 0 steps
    write_recipe(tmp_path / "b", {**inert, "tune_steps": 400})  # a v8b work folder: stage 2b changed its weights
    with pytest.raises(IncompatibleArtifact, match="tune_steps"):
        check_work(TINY, tmp_path / "b")
