"""A toy image-to-video model: the shipped toy CogVideoX turned into a `CogVideoXImageToVideoPipeline` folder and
fine-tuned on its own world to start from a given first frame.

    python -m ditflow.toyworld.i2v --base assets/toy-cogvideox --out assets/toy-cogvideox-i2v --minutes 45 [--judge 8]

The transformer's patch embedding gets the image latent's channels, zero-initialised, so the converted model
starts as the text-to-video one; then every weight trains (v-prediction, as stage 2) on world clips whose image
latent (frame 0 sampled from the VAE, zeros after, as the I2V pipeline builds it) is concatenated to the noisy
latent. `--judge N` then generates from the first frames of N held-out clips and measures how well frame 0 of
the result holds the image (pixel error, the object's position) against the text-to-video model's output.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .data import TRAIN_SEED0, frames_to_video
from .diffusion import lr_factor, noised
from .references import held_out_clips, model_world, model_world_clip

FINETUNE_STAGE = 7  # world seeds of this fine-tune: TRAIN_SEED0 + 7e7 + ..., apart from every other stage's


def convert(base: Path):
    """The toy pipeline as an image-to-video one: in_channels doubled, the new channels' weights zero."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline, CogVideoXTransformer3DModel

    t2v = CogVideoXPipeline.from_pretrained(base)
    cfg = {k: v for k, v in t2v.transformer.config.items() if not k.startswith("_")}
    c = cfg["in_channels"]
    transformer = CogVideoXTransformer3DModel(**{**cfg, "in_channels": 2 * c})
    state = t2v.transformer.state_dict()
    w = state["patch_embed.proj.weight"]  # [D, C, p, p] (a conv over the latent's channels)
    state["patch_embed.proj.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
    transformer.load_state_dict(state)
    return CogVideoXImageToVideoPipeline(tokenizer=t2v.tokenizer, text_encoder=t2v.text_encoder, vae=t2v.vae,
                                         transformer=transformer, scheduler=t2v.scheduler)


def image_latents(vae, frames: torch.Tensor, scaling: float, latent_frames: int, gen: torch.Generator) -> torch.Tensor:
    """Pixels [B, 3, T, H, W] -> the I2V condition [B, F, C, h, w]: frame 0's latent (sampled), zeros after."""
    z = vae.encode(frames[:, :, :1]).latent_dist.sample(gen) * scaling  # [B, C, 1, h, w]
    z = z.permute(0, 2, 1, 3, 4)
    return torch.cat([z, z.new_zeros(z.shape[0], latent_frames - 1, *z.shape[2:])], dim=1)


def finetune(pipe, model: Path, minutes: float, batch: int = 4, lr: float = 2e-4, log=print) -> int:
    """Train every transformer weight until the deadline; the steps taken."""
    recipe = json.loads((model / "recipe.json").read_text())
    vae, tr = pipe.vae, pipe.transformer
    scaling = vae.config.scaling_factor
    alphas = pipe.scheduler.alphas_cumprod.float()  # float64 in the scheduler
    from ..backbones.cogvideox_attn import rope_tables

    latent_frames = (recipe["frames"] - 1) // 4 + 1
    rope = None  # for the latent grid, once the first batch is encoded
    opt = torch.optim.AdamW(tr.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    start, step = time.time(), 0
    deadline = start + 60 * minutes
    tr.train()
    vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    while time.time() < deadline:
        clips = [model_world_clip(TRAIN_SEED0 + FINETUNE_STAGE * 10_000_000 + step * batch + i, model) for i in range(batch)]
        video = frames_to_video(np.stack([c.frames for c in clips]))
        with torch.no_grad():
            x0 = (vae.encode(video).latent_dist.mode() * scaling).permute(0, 2, 1, 3, 4)
            cond = image_latents(vae, video, scaling, latent_frames, gen)
            if rope is None:
                p = tr.config.patch_size
                rope = rope_tables(tr.config, (x0.shape[1], x0.shape[3] // p, x0.shape[4] // p))
            text, _ = pipe.encode_prompt([c.prompt for c in clips], do_classifier_free_guidance=False,
                                         max_sequence_length=tr.config.max_text_seq_length)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        xt, v = noised(alphas, x0, noise, t)
        pred = tr(hidden_states=torch.cat([xt, cond], dim=2), encoder_hidden_states=text, timestep=t,
                  image_rotary_emb=rope, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), v.float())
        # the cosine ends at the deadline: its step count from the rate so far (a fixed guess of 1 step/s left the
        # learning rate at 0 for the last fifth of a 2-core run that took 1.25 steps/s)
        elapsed = time.time() - start
        total = max(step + 1, int(step * 60 * minutes / elapsed)) if step else int(60 * minutes)
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, total, warmup=50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.4f} ({(deadline - time.time()) / 60:.1f} min left)")
        step += 1
    tr.eval()
    return step


def export(pipe, base: Path, out: Path, steps: int, minutes: float) -> Path:
    """The fine-tuned pipeline with the toy's own files (its world, measured defaults) and what trained it."""
    pipe.save_pretrained(out)
    for name in ("ditflow.json",):
        shutil.copy(base / name, out / name)
    recipe = json.loads((base / "recipe.json").read_text())
    recipe["image_to_video"] = {"from": str(base), "steps": steps, "minutes": minutes, "stage_seed": FINETUNE_STAGE}
    (out / "recipe.json").write_text(json.dumps(recipe, indent=1))
    return out


@torch.no_grad()
def judge(i2v_folder: Path, base: Path, n: int, steps: int = 50, log=print) -> dict:
    """Frame 0 of an unguided image-to-video run vs the held-out clip's first frame (the image), against the
    text-to-video model's frame 0 for the same prompt and seed: mean absolute pixel error (0-255) and the
    distance (pixels) between the object's centroids in frame 0."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline
    from PIL import Image

    from .judge import centroid_path, max_area_for, prompt_match

    recipe = json.loads((base / "recipe.json").read_text())
    world = model_world(base)
    i2v, t2v = CogVideoXImageToVideoPipeline.from_pretrained(i2v_folder), CogVideoXPipeline.from_pretrained(base)
    size, frames = recipe["size"], recipe["frames"]
    rows = []
    for seed, clip in held_out_clips(n, frames, size, size, world.radius, shapes=world.shapes):
        image = clip.frames[0]
        kw = dict(prompt=clip.prompt, height=size, width=size, num_frames=frames, num_inference_steps=steps,
                  guidance_scale=2.5, output_type="np",  # the toy's CFG and its 16 text tokens (the pipeline pads to 226)
                  max_sequence_length=t2v.transformer.config.max_text_seq_length)
        a = i2v(image=Image.fromarray(image), generator=torch.Generator().manual_seed(seed), **kw).frames[0]
        b = t2v(generator=torch.Generator().manual_seed(seed), **kw).frames[0]
        row = {"seed": seed, "prompt": clip.prompt}
        ref = clip.trajectories[0][0]  # the object's true centre in the image
        for name, out in (("i2v", a), ("t2v", b)):
            video = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
            row[f"{name}_frame0_mae"] = float(np.abs(video[0].astype(int) - image.astype(int)).mean())
            mask = prompt_match(video, clip.prompt, max_area_for(world.radius), world.shapes).mask  # as bench-quality
            got = centroid_path(mask)[0]
            row[f"{name}_centroid_px"] = float(np.linalg.norm(got - ref)) if np.isfinite(got).all() else None
        rows.append(row)
        log(json.dumps(row))
    return {"rows": rows, **{f"mean_{k}": float(np.nanmean([r[k] if r[k] is not None else np.nan for r in rows]))
                             for k in ("i2v_frame0_mae", "t2v_frame0_mae", "i2v_centroid_px", "t2v_centroid_px")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=Path("assets/toy-cogvideox"))
    ap.add_argument("--out", type=Path, default=Path("assets/toy-cogvideox-i2v"))
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--judge", type=int, default=8, help="held-out clips to judge frame 0 on (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if not (args.out / "model_index.json").is_file():
        pipe = convert(args.base)
        steps = finetune(pipe, args.base, args.minutes)
        export(pipe, args.base, args.out, steps, args.minutes)
    if args.judge:
        result = judge(args.out, args.base, args.judge)
        (args.out / "judge.json").write_text(json.dumps(result, indent=1))
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
