"""The toy model's recipe runs, checkpoints, resumes and exports a pipeline the toolkit loads."""
from dataclasses import replace

import numpy as np

from ditflow.toyworld.train import Recipe, train

TINY = replace(Recipe(), shape_weight=2.0, size=32, frames=9, vae_channels=(8, 8, 8), latent_channels=4, patch=2, heads=2, head_dim=16, layers=2,
               vae_steps=2, vae_batch=1, steps=2, batch=2, checkpoint_every=1, bank=40, decoder_steps=2, object_weight_from=1, text_from=1,
               text_steps=2, text_batch=4, tune_steps=2,
               defaults={"guidance_blocks": [1], "frames": 9, "height": 32, "width": 32, "cfg": 2.5, "steps": 4})


def test_train_resume_export_and_use(tmp_path, runtime, store):
    import json

    from ditflow.config import ExtractConfig
    from ditflow.stages import extract

    work, out = tmp_path / "work", tmp_path / "toy"
    train(TINY, work, out, quiet=True)
    assert json.loads((work / "vae.json").read_text())["step"] == 2
    assert json.loads((work / "transformer.json").read_text())["step"] == 2
    train(replace(TINY, steps=3), work, out, quiet=True)  # resumes: one more step only
    assert json.loads((work / "transformer.json").read_text())["step"] == 3
    assert json.loads((work / "latents.json").read_text())["size"] == 40  # encoded once, reused on resume
    from safetensors.torch import load_file

    bank = load_file(str(work / "latents.safetensors"))
    assert bank["ambiguity"].shape == bank["masks"].shape and 0 < bank["ambiguity"].max() <= 1  # shape weighting
    assert json.loads((work / "decoder.json").read_text())["step"] == 2
    assert json.loads((work / "text_pretrain.json").read_text())["step"] == 2
    tune = json.loads((work / "tune.json").read_text())
    assert tune["step"] == 2 and np.isfinite(tune["foil_gap"])
    assert (out / "ditflow.json").is_file() and (out / "model_index.json").is_file()

    from ditflow.toyworld import make_clip
    from ditflow.video import write_video

    ref = write_video(make_clip(1, 9, 32, 32).frames, tmp_path / "ref.gif")
    amf = extract(ref, ExtractConfig(model=str(out)), runtime=runtime, store=store)  # sizes from ditflow.json
    assert amf.grid == (3, 4, 4) and amf.blocks == [1]
    assert np.isfinite(amf.amf(1).numpy()).all()


def test_resume_refuses_checkpoints_of_another_recipe(tmp_path):
    import json
    from dataclasses import asdict

    import pytest

    from ditflow.toyworld.train import check_work

    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps(asdict(TINY)))
    check_work(replace(TINY, steps=10, vae_steps=5), work)  # longer runs resume the same model
    with pytest.raises(SystemExit, match="latent_channels"):
        check_work(replace(TINY, latent_channels=8), work)


def test_scene_prompt_matches_the_rendered_clip_and_parses():
    from ditflow.toyworld import make_clip
    from ditflow.toyworld.train import _parse_labels
    from ditflow.toyworld.world import scene_prompt

    seeds = range(10_000, 10_200)
    prompts = [scene_prompt(s) for s in seeds]
    assert prompts == [make_clip(s, 5, 16, 16).prompt for s in seeds]  # no rendering needed for stage 1b
    labels = _parse_labels(prompts)
    assert labels.shape == (200, 6) and (labels[:, 2] < 11).any() and (labels[:, 2] == 11).any()  # 1 and 2 objects


def test_text_stage_teaches_every_token_the_parse(tmp_path):
    """Stage 1b alone, briefly: the worst of its six probes beats chance by far (all tokens, pads included)."""
    import json

    from ditflow.progress import Progress
    from ditflow.toyworld.train import build, train_text

    recipe = replace(Recipe(), text_steps=300, checkpoint_every=300)
    tokenizer, text_encoder = build(recipe)[:2]
    train_text(recipe, tokenizer, text_encoder, tmp_path, "cpu", Progress(True))
    state = json.loads((tmp_path / "text_pretrain.json").read_text())
    assert state["step"] == 300 and state["worst_accuracy"] > 0.6  # chance: 1/12 colours, 1/3 kinds


def test_model_world_radius_follows_the_model_recipe(tmp_path):
    import json

    from ditflow.toyworld.train import model_world
    from ditflow.toyworld.world import OBJECT_RADIUS

    assert model_world(tmp_path).radius == OBJECT_RADIUS  # not a trained folder: today's world
    (tmp_path / "recipe.json").write_text(json.dumps({"size": 64}))
    assert model_world(tmp_path).radius == (0.10, 0.18)  # v3 predates the setting
    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.2, 0.3]}))
    assert model_world(tmp_path).radius == (0.2, 0.3)


def test_model_world_reads_the_shape_set(tmp_path):
    import json

    from ditflow.toyworld.train import model_world
    from ditflow.toyworld.world import COARSE_SHAPES, SHAPES

    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.14, 0.22]}))
    assert model_world(tmp_path).shapes == SHAPES  # v1-v6 predate the setting
    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.18, 0.26], "shapes": list(COARSE_SHAPES)}))
    assert model_world(tmp_path).shapes == COARSE_SHAPES and model_world(tmp_path).radius == (0.18, 0.26)


def test_recipe_shapes_reach_clips_prompts_and_vocabulary():
    from ditflow.toyworld.train import _parse_labels, build, clip_batch
    from ditflow.toyworld.world import COARSE_SHAPES

    recipe = replace(TINY, shapes=COARSE_SHAPES)
    _, prompts = clip_batch(recipe, 0, 40, stage=1)
    words = {w for p in prompts for w in p.split()}
    assert words & {"bar", "column"} and not words & {"square", "diamond", "cross"}
    assert (_parse_labels(prompts, COARSE_SHAPES)[:, 1] < len(COARSE_SHAPES)).all()
    tokenizer = build(recipe)[0]
    assert tokenizer.unk_token_id not in tokenizer("a red bar and a blue column on a grey background").input_ids


def test_a_recipe_can_take_its_vae_from_a_trained_model(tmp_path):
    """vae_from: stages 1 and 3 copy that folder's VAE, so a world of other shapes skips them."""
    import json

    import pytest
    import torch

    from ditflow.progress import Progress
    from ditflow.toyworld.train import build, train_vae

    source = build(TINY)[2]
    torch.nn.init.normal_(source.decoder.conv_out.conv.weight)  # not the seed's init: the copy must be of these
    source.save_pretrained(tmp_path / "src" / "vae")
    recipe = replace(TINY, vae_from=str(tmp_path / "src"))
    vae = build(recipe)[2]
    (tmp_path / "work").mkdir()
    train_vae(recipe, vae, tmp_path / "work", "cpu", Progress(True))
    assert torch.equal(vae.decoder.conv_out.conv.weight, source.decoder.conv_out.conv.weight)
    for stage in ("vae", "decoder"):
        assert json.loads((tmp_path / "work" / f"{stage}.json").read_text())["from"] == str(tmp_path / "src")
    (tmp_path / "w2").mkdir()
    with pytest.raises(SystemExit, match="no vae/ folder"):
        train_vae(replace(TINY, vae_from=str(tmp_path / "nowhere")), build(TINY)[2], tmp_path / "w2", "cpu", Progress(True))


def test_shape_fine_tune_can_act_on_the_shape_region(tmp_path):
    """Stage 2b with tune_region "shapes" (v7b) runs on the bank's ambiguity masks; without them it says so."""
    import json

    import pytest

    recipe = replace(TINY, tune_region="shapes", tune_t=(700, 900))
    train(recipe, tmp_path / "work", tmp_path / "toy", quiet=True)
    tune = json.loads((tmp_path / "work" / "tune.json").read_text())
    assert tune["step"] == 2 and np.isfinite(tune["foil_gap"])
    with pytest.raises(SystemExit, match="ambiguity masks"):
        train(replace(recipe, shape_weight=0.0), tmp_path / "work0", tmp_path / "toy0", quiet=True)
    with pytest.raises(ValueError, match="tune_region"):
        replace(TINY, tune_region="edges")


def test_recipe_object_radius_reaches_the_training_clips():
    from ditflow.toyworld.train import clip_batch

    small, _ = clip_batch(replace(TINY, object_radius=(0.1, 0.1)), 0, 1, stage=1)
    big, _ = clip_batch(replace(TINY, object_radius=(0.3, 0.3)), 0, 1, stage=1)
    assert not np.array_equal(small.numpy(), big.numpy())


def test_recipe_refuses_sizes_the_patch_grid_cannot_tile():
    import pytest

    with pytest.raises(ValueError, match="multiple of 12"):
        replace(Recipe(), patch=3)  # 64 px: VAE factor 4 x patch 3 = 12 does not divide it
    with pytest.raises(ValueError, match="4k \\+ 1"):
        replace(Recipe(), frames=16)


def test_model_world_clip_draws_at_the_model_size(tmp_path):
    import json

    from ditflow.toyworld.train import model_world_clip
    from ditflow.toyworld.world import make_clip

    (tmp_path / "recipe.json").write_text(json.dumps({"size": 48, "frames": 9, "object_radius": [0.2, 0.2]}))
    clip = model_world_clip(3, tmp_path)
    assert clip.frames.shape == (9, 48, 48, 3)
    assert np.array_equal(clip.frames, make_clip(3, 9, 48, 48, radius=(0.2, 0.2)).frames)


def test_latent_masks_cover_each_latent_frame_group():
    from ditflow.toyworld.train import latent_mask
    from ditflow.toyworld.world import make_clip

    clip = make_clip(5, 9, 32, 32)
    m = latent_mask(clip, spatial=4)
    assert m.shape == (3, 8, 8) and 0 < m.max() <= 1
    # latent frame 1 covers pixel frames 1-4: anywhere the object is in one of them
    union = clip.masks.any(axis=0)[1:5].any(axis=0).reshape(8, 4, 8, 4).mean(axis=(1, 3))
    assert np.allclose(m[1], union)


def test_resume_accepts_work_folders_from_before_the_patch_setting(tmp_path):
    import json
    from dataclasses import asdict

    from ditflow.toyworld.train import check_work

    old = json.loads(json.dumps(asdict(Recipe())))
    del old["patch"]  # v4's recipe.json
    (tmp_path / "recipe.json").write_text(json.dumps(old))
    check_work(Recipe(), tmp_path)  # no SystemExit


def test_resume_reads_recipes_from_before_the_shape_weight_as_unweighted(tmp_path):
    import json
    from dataclasses import asdict

    import pytest

    from ditflow.toyworld.train import check_work

    old = json.loads(json.dumps(asdict(TINY)))
    del old["shape_weight"]  # v4's and v5's recipe.json
    (tmp_path / "recipe.json").write_text(json.dumps(old))
    check_work(replace(TINY, shape_weight=0.0), tmp_path)  # no SystemExit: they trained without it
    with pytest.raises(SystemExit, match="shape_weight"):
        check_work(replace(TINY, shape_weight=2.0), tmp_path)


def test_foil_prompt_swaps_only_the_first_object_shape():
    import torch

    from ditflow.toyworld.judge import parse_prompt
    from ditflow.toyworld.train import foil_prompt

    gen = torch.Generator().manual_seed(0)
    prompt = "a red circle and a blue square on a textured grey background"
    foils = [parse_prompt(foil_prompt(prompt, gen)) for _ in range(40)]
    assert all(f.objects[0][0] == "red" and f.objects[0][1] != "circle" for f in foils)
    assert all(f.objects[1] == ("blue", "square") and (f.background, f.bg_colour) == ("textured", "grey") for f in foils)
    assert len({f.objects[0][1] for f in foils}) == 4  # every other shape


def test_object_errors_average_over_covered_pixels_only():
    import torch

    from ditflow.toyworld.train import object_errors

    target = torch.zeros(2, 3, 4, 4, 4)
    pred = target.clone()
    pred[:, :, :, 0, 0] = 2.0  # wrong only at pixel (0, 0)
    mask = torch.zeros(2, 3, 1, 4, 4)
    mask[0, :, :, 0, 0] = 1.0  # sample 0: the error is on its object
    mask[1, :, :, 3, 3] = 1.0  # sample 1: the error is off its object
    assert torch.allclose(object_errors(pred, target, mask), torch.tensor([4.0, 0.0]))


def test_stage_2b_settings_may_change_until_it_has_run(tmp_path):
    import json
    from dataclasses import asdict

    import pytest

    from ditflow.toyworld.train import check_work

    (tmp_path / "recipe.json").write_text(json.dumps(asdict(TINY)))
    check_work(replace(TINY, tune_margin=0.3, tune_steps=50), tmp_path)  # a v4 work folder grows a stage 2b
    (tmp_path / "tune.json").write_text(json.dumps({"step": 1}))
    with pytest.raises(SystemExit, match="tune_margin"):
        check_work(replace(TINY, tune_margin=0.3), tmp_path)


def test_stage_2b_without_contrast_is_a_plain_fine_tune_on_its_band(tmp_path):
    import json

    from safetensors.torch import load_file

    work = tmp_path / "work"
    train(replace(TINY, tune_contrast=0.0, tune_t=(500, 999)), work, tmp_path / "toy", quiet=True)
    tune = json.loads((work / "tune.json").read_text())
    assert tune["step"] == 2 and "foil_gap" not in tune and tune["loss"] == tune["fit"]  # no foil scored
    before, after = load_file(str(work / "transformer_ema.safetensors")), load_file(str(work / "tune.safetensors"))
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # it trained


def test_named_recipes_differ_only_where_documented():
    from dataclasses import asdict

    from ditflow.toyworld.train import RECIPES

    v4, v6 = asdict(RECIPES["v4"]), asdict(RECIPES["v6"])
    assert v4 == asdict(Recipe())  # the CPU recipe
    assert {k for k in v4 if v4[k] != v6[k]} == {"object_radius", "shape_weight", "steps"}
    v7, v8 = asdict(RECIPES["v7"]), asdict(RECIPES["v8"])  # v8: v7 in large batches (the shipped v9 starts from it)
    assert {k for k in v7 if v7[k] != v8[k]} == {"batch", "lr", "warmup", "bank", "steps", "checkpoint_every", "defaults"}
    assert {k for k in v7["defaults"] if v7["defaults"][k] != v8["defaults"].get(k)} == {"guidance_blocks", "injection"}
    v8b = asdict(RECIPES["v8b"])  # stage 2b on v8's weights
    assert {k for k in v8 if v8[k] != v8b[k]} == {"init_from", "vae_from", "steps", "bank", "batch", "tune_steps", "tune_t",
                                                  "tune_region", "checkpoint_every"}
    low, v8c = asdict(RECIPES["v8b-low"]), asdict(RECIPES["v8c"])  # other fine-tunes of v8
    assert {k for k in v8b if v8b[k] != low[k]} == {"tune_t", "tune_lr"}
    assert {k for k in v8b if v8b[k] != v8c[k]} == {"tune_steps", "tune_t", "tune_contrast", "checkpoint_every"}
    v9 = asdict(RECIPES["v9"])  # v8 trained further: the shipped model
    assert {k for k in v8 if v8[k] != v9[k]} == {"init_from", "vae_from", "lr", "warmup", "ema_start", "bank", "steps",
                                                 "amp", "device_noise", "defaults"}
    assert {k for k in v9["defaults"] if v9["defaults"][k] != v8["defaults"][k]} == {"emb_lr", "emb_after"}


def test_the_shipped_model_is_v9s_recipe():
    import json
    from dataclasses import asdict
    from pathlib import Path

    from ditflow.toyworld.train import RECIPES, stored_recipe

    shipped = json.loads((Path(__file__).resolve().parents[1] / "assets/toy-cogvideox/recipe.json").read_text())
    assert stored_recipe(shipped) == json.loads(json.dumps(asdict(RECIPES["v9"])))  # make toy-model reproduces what ships


def test_bank_rendered_by_worker_processes_is_the_same(tmp_path):
    from ditflow.progress import Progress
    from ditflow.toyworld.train import _latent_bank, build

    vae = build(TINY)[2].eval()
    banks = []
    for workers in (0, 2):
        (tmp_path / str(workers)).mkdir()
        banks.append(_latent_bank(TINY, vae, 1.0, tmp_path / str(workers), "cpu", Progress(quiet=True), workers))
    one, two = banks
    assert one[1] == two[1] and len(one[1]) == TINY.bank  # prompts, in order
    for a, b in zip((one[0], one[2], one[3]), (two[0], two[2], two[3])):
        assert a.shape[0] == TINY.bank and np.array_equal(a.numpy(), b.numpy())


def test_a_deadline_cuts_stage_2_and_the_export_records_the_count(tmp_path):
    import json
    import time

    out = tmp_path / "toy"
    recipe = replace(TINY, steps=500, tune_steps=0)
    train(recipe, tmp_path / "work", out, quiet=True, deadline=time.time() + 1.0)  # far fewer than 500 fit
    trained = json.loads((tmp_path / "work" / "transformer.json").read_text())
    assert 2 <= trained["step"] == trained["planned"] < 500
    assert json.loads((out / "recipe.json").read_text())["steps"] == trained["step"]


def test_step_plan_keeps_the_count_without_a_deadline_and_stops_at_the_deadline():
    import time

    from ditflow.toyworld.train import StepPlan

    plan = StepPlan(100, None, probe=3)
    assert not any(plan.tick(s, 0) for s in range(100)) and plan.total == 100
    late = StepPlan(100, time.time() - 10, probe=3)  # already past: the second step is the last
    assert [late.tick(s, 0) for s in range(2)] == [False, True] and late.total == 2
    slow = StepPlan(100, time.time() + 0.05, probe=3)  # on plan after timing, then the machine slows down
    [slow.tick(s, 0) for s in range(3)]
    assert slow.total > 3
    time.sleep(0.06)
    assert slow.tick(3, 0) and slow.total == 4  # past the deadline: this step is the last


def test_a_prepared_bank_is_reused_by_a_recipe_that_differs_in_the_transformer(tmp_path):
    import json
    import shutil

    from ditflow.toyworld.train import prepare

    a, b = tmp_path / "a", tmp_path / "b"
    prepare(TINY, a, quiet=True)
    assert json.loads((a / "latents.json").read_text())["size"] == TINY.bank and not (a / "transformer.json").exists()
    shutil.copytree(a, b)
    (b / "recipe.json").unlink()
    stamp = (b / "latents.safetensors").stat().st_mtime_ns
    train(replace(TINY, layers=3, tune_steps=0), b, tmp_path / "toy", quiet=True)
    assert (b / "latents.safetensors").stat().st_mtime_ns == stamp  # not encoded again
    assert json.loads((b / "transformer.json").read_text())["step"] == TINY.steps


def test_ema_step_follows_the_decay_and_copies_at_zero():
    import torch

    from ditflow.toyworld.train import _ema_step

    module = torch.nn.Linear(2, 2)
    ema = {k: torch.zeros_like(v) for k, v in module.state_dict().items()}
    _ema_step(ema, module, 0.75)
    assert torch.allclose(ema["weight"], 0.25 * module.weight.detach())
    _ema_step(ema, module, 0.0)
    assert torch.equal(ema["weight"], module.weight.detach())


def test_warm_up_ramps_the_learning_rate_then_the_cosine_ends_at_zero():
    from ditflow.toyworld.train import lr_factor

    ramp = [lr_factor(s, 100, 4) / lr_factor(s, 100) for s in range(5)]  # the warm-up's share of the factor
    assert np.allclose(ramp, [0.25, 0.5, 0.75, 1.0, 1.0])
    assert lr_factor(0, 100) == 1.0 and lr_factor(100, 100, 4) == 0.0 and lr_factor(50, 100) == 0.5


def test_draw_batch_keeps_the_order_training_draws_in():
    """Stage 2's randomness is drawn as before draw_batch existed, so recipes stay reproducible."""
    import torch

    from ditflow.toyworld.train import draw_batch

    recipe = replace(TINY, batch=4)
    idx, empty, t, noise = draw_batch(recipe, torch.Generator().manual_seed(3), 40, (3, 4, 2, 2))
    gen = torch.Generator().manual_seed(3)
    want_idx = torch.randint(40, (4,), generator=gen)
    want_empty = torch.tensor([torch.rand(1, generator=gen).item() < recipe.empty_prompt for _ in range(4)])
    want_t = (999 * torch.rand(4, generator=gen) ** recipe.high_noise_power).round().long()
    assert torch.equal(idx, want_idx) and torch.equal(empty, want_empty) and torch.equal(t, want_t)
    assert torch.equal(noise, torch.randn((4, 3, 4, 2, 2), generator=gen))


def test_a_recipe_can_start_stage_2_from_a_trained_pipeline(tmp_path):
    """init_from: a shipped model trained further without its work folder. Stage 2 starts from that folder's
    transformer and text encoder at its latent scaling; stage 1b is skipped; other shapes are refused."""
    import json

    import pytest
    import torch
    from diffusers import CogVideoXTransformer3DModel

    source = tmp_path / "toy"
    train(replace(TINY, tune_steps=0), tmp_path / "w0", source, quiet=True)
    recipe = replace(TINY, init_from=str(source), vae_from=str(source), steps=0, tune_steps=0, text_steps=50)
    work = tmp_path / "w1"
    out = train(recipe, work, tmp_path / "toy-again", quiet=True)  # zero steps: the copy itself is exported
    start = json.loads((work / "transformer.json").read_text())
    assert start["from"] == str(source) and start["step"] == 0
    assert start["scaling"] == json.loads((source / "vae" / "config.json").read_text())["scaling_factor"]
    assert json.loads((work / "text_pretrain.json").read_text())["step"] == 50  # stage 1b not run
    a = CogVideoXTransformer3DModel.from_pretrained(source / "transformer").state_dict()
    b = CogVideoXTransformer3DModel.from_pretrained(out / "transformer").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # --export-only of that work folder (stage 2 saved no text encoder of its own) carries the source's T5
    from transformers import T5EncoderModel

    from ditflow.toyworld.train import export_checkpoint

    again = export_checkpoint(recipe, work, tmp_path / "toy-export")
    a, b = (T5EncoderModel.from_pretrained(f / "text_encoder").state_dict() for f in (source, again))
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(replace(recipe, steps=1), work, tmp_path / "toy-1", quiet=True)  # then it trains on from there
    assert json.loads((work / "transformer.json").read_text())["step"] == 1
    with pytest.raises(SystemExit, match="num_layers"):
        train(replace(recipe, layers=3), tmp_path / "w2", tmp_path / "x", quiet=True)
    with pytest.raises(SystemExit, match="same folder"):
        train(replace(recipe, vae_from=None), tmp_path / "w3", tmp_path / "x", quiet=True)


def test_bf16_autocast_and_device_noise_train(tmp_path):
    """The GPU speed settings run (here on CPU) and keep stage 2's loss finite; device noise comes from its own
    generator."""
    import json

    import torch

    from ditflow.toyworld.train import draw_batch

    train(replace(TINY, amp=True, device_noise=True, tune_steps=0), tmp_path / "w", tmp_path / "toy", quiet=True)
    assert np.isfinite(json.loads((tmp_path / "w" / "transformer.json").read_text())["loss"])
    recipe = replace(TINY, batch=3)
    _, _, _, noise = draw_batch(recipe, torch.Generator().manual_seed(0), 40, (2, 2), torch.Generator().manual_seed(5))
    assert torch.equal(noise, torch.randn((3, 2, 2), generator=torch.Generator().manual_seed(5)))
