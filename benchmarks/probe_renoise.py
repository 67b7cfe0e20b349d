"""Where does the toy model lose the prompt's shape? Held-out clips of each of its world's shapes are encoded,
noised to t0 and sampled down with their own prompt (the model's DDIM steps from t0 on, its CFG); the pixel
judge then says whether the shape survived. t0 = 999 starts from pure noise, as the benchmark's samples do.

    python benchmarks/probe_renoise.py [--model toy] [--per-shape 6] [--timesteps 150,300,500,650,999]

A shape kept near t = 0 and lost from some t0 up is one the denoiser rounds off at that noise level: the
noise levels a fine-tune should aim at. Writes JSON and prints a table (share kept, per shape and t0).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def first_step(timesteps: list[int], t0: int) -> int:
    """Index of the first of the sampler's (descending) timesteps at or below t0: where a re-noised start joins
    the schedule."""
    below = [i for i, t in enumerate(timesteps) if t <= t0]
    if not below:
        raise ValueError(f"t0 {t0} is below every sampler timestep (the last is {timesteps[-1]})")
    return below[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy", help="toy, or a toy model folder")
    ap.add_argument("--per-shape", type=int, default=6, help="held-out clips of each shape")
    ap.add_argument("--timesteps", default="150,300,500,650,999", help="comma-separated t0 to noise to")
    ap.add_argument("--seeds", default="0,1", help="noise seeds per clip")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "probe_renoise.json")
    args = ap.parse_args()

    import torch
    from diffusers import CogVideoXPipeline

    from ditflow.backbone import preset, resolve_folder, rope_tables
    from ditflow.toyworld import judge
    from ditflow.toyworld.train import held_out_clips, model_world

    pre, folder = preset(args.model), resolve_folder(args.model)
    pipe = CogVideoXPipeline.from_pretrained(folder)
    world = model_world(folder)
    max_area = judge.max_area_for(world.radius)
    pool = held_out_clips(args.per_shape * len(world.shapes) * 4, pre.frames, pre.height, pre.width, world.radius,
                          shapes=world.shapes)
    clips = {s: [c for _, c in pool if c.shapes[0] == s][: args.per_shape] for s in world.shapes}
    scheduler = pipe.scheduler
    scheduler.set_timesteps(pre.steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    scaling = pipe.vae.config.scaling_factor
    cfg = pipe.transformer.config
    patch = pipe.vae_scale_factor_spatial * cfg.patch_size  # pixels per token side
    rope = rope_tables(cfg, ((pre.frames - 1) // pipe.vae_scale_factor_temporal + 1, pre.height // patch,
                             pre.width // patch))

    @torch.no_grad()
    def resample(clip, t0: int, seed: int) -> np.ndarray:
        x = torch.from_numpy(clip.frames.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
        z = pipe.vae.encode(x).latent_dist.mode().permute(0, 2, 1, 3, 4) * scaling  # [1, F, C, h, w]
        cond, uncond = pipe.encode_prompt(clip.prompt, pre.negative_prompt, do_classifier_free_guidance=True,
                                          max_sequence_length=pipe.transformer.config.max_text_seq_length)
        text = torch.cat([uncond, cond])
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
        start = first_step(timesteps, t0)
        latent = scheduler.add_noise(z, noise, scheduler.timesteps[start:start + 1])
        for t in scheduler.timesteps[start:]:
            v = pipe.transformer(hidden_states=torch.cat([latent] * 2), encoder_hidden_states=text,
                                 timestep=t.expand(2), image_rotary_emb=rope, return_dict=False)[0]
            v_uncond, v_cond = v.chunk(2)
            latent = scheduler.step(v_uncond + pre.cfg * (v_cond - v_uncond), t, latent, return_dict=False)[0]
        video = pipe.video_processor.postprocess_video(video=pipe.decode_latents(latent), output_type="np")[0]
        return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for t0 in (int(t) for t in args.timesteps.split(",")):
        row = {"t0": t0}
        for shape, group in clips.items():
            kept = [judge.prompt_match(resample(c, t0, s), c.prompt, max_area, world.shapes).shape
                    for c in group for s in seeds]
            row[shape] = float(np.mean(kept)) if kept else None
        rows.append(row)
        print(f"t0={t0:4d}  " + "  ".join(f"{s} {row[s]:4.0%}" for s in clips if row[s] is not None), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "probe_renoise", "model": args.model, "per_shape": args.per_shape,
                                    "seeds": seeds, "measure": "share of re-noised clips whose shape the judge "
                                    "still sees", "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
