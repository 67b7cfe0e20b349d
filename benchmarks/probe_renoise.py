"""Where does the toy model lose the prompt's shape? Held-out clips of each of its world's shapes are encoded,
noised to t0 and sampled down with their own prompt (ditflow's sampler with the model's steps from t0 on and its CFG); the pixel
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

    from benchmarks import _probe
    from ditflow.backbones import resolve_model
    from ditflow.sampling import Denoiser, sample
    from ditflow.toyworld import judge
    from ditflow.toyworld.references import model_world

    pre, backbone, _, model = _probe.load(args.model)
    world = model_world(resolve_model(args.model).folder)
    max_area = judge.max_area_for(world.radius)
    scheduler = backbone.scheduler
    scheduler.set_timesteps(pre.steps)
    timesteps = scheduler.timesteps
    negative = backbone.encode_prompt(pre.negative_prompt)

    def prepared(clip):
        """(clip, its latent, the denoiser of its prompt): encoded once for every t0 and seed."""
        text = torch.cat([negative, backbone.encode_prompt(clip.prompt)])
        return clip, backbone.encode_video(clip.frames), Denoiser(model, text, pre.cfg, pre.steps)

    pool = [c for _, c in _probe.references(args.model, pre, args.per_shape * len(world.shapes) * 4)]
    groups = {s: [prepared(c) for c in [c for c in pool if c.shapes[0] == s][: args.per_shape]] for s in world.shapes}

    def resample(latent, denoise, t0: int, seed: int) -> np.ndarray:
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)).to(latent)
        start = first_step([int(t) for t in timesteps], t0)
        x = scheduler.add_noise(latent, noise, timesteps[start:start + 1])
        return backbone.decode(sample(denoise, x, timesteps[start:], backbone))

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for t0 in (int(t) for t in args.timesteps.split(",")):
        row = {"t0": t0}
        for shape, group in groups.items():
            kept = [judge.prompt_match(resample(latent, denoise, t0, s), c.prompt, max_area, world.shapes).shape
                    for c, latent, denoise in group for s in seeds]
            row[shape] = float(np.mean(kept)) if kept else None
        rows.append(row)
        print(f"t0={t0:4d}  " + "  ".join(f"{s} {row[s]:4.0%}" for s in groups if row[s] is not None), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "probe_renoise", "model": args.model, "per_shape": args.per_shape,
                                    "seeds": seeds, "measure": "share of re-noised clips whose shape the judge "
                                    "still sees", "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
