"""Probe: does the toy model read each word of the prompt? Object-region denoising error with wrong words.

    python benchmarks/probe_text.py [--model toy] [--refs 16] [--timesteps 100,300,500,700,900]

Held-out world clips are encoded and noised to timestep t (fixed noise), and the transformer's v-prediction
error is measured on the object's latent pixels with the clip's own prompt, with the first object's shape
swapped for another, with its colour swapped for another, and with the empty prompt. A model that uses a
word predicts worse when the word is wrong: the ratio (wrong / right) is above 1. A ratio of 1 for shape
means the prompt's shape cannot change what the model draws. `--region shapes` measures over the pixels any
of the world's shapes would cover at the object instead (`world.shape_region`): in a world whose shapes differ
in area (v7's), a wrong word that draws a larger blob scores better on the object's own pixels while it
paints outside them. Writes JSON and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("right", "shape", "colour", "empty")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--refs", type=int, default=16)
    ap.add_argument("--timesteps", default="100,300,500,700,900")
    ap.add_argument("--region", choices=("object", "shapes"), default="object",
                    help="latent pixels measured: the object's, or any shape's of the world at the object")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "probe_text.json")
    args = ap.parse_args()

    import torch

    from benchmarks import _probe
    from ditflow.toyworld.judge import swap_word
    from ditflow.backbones import resolve_model
    from ditflow.toyworld.data import latent_mask, to_latent_grid
    from ditflow.toyworld.diffusion import noised
    from ditflow.toyworld.references import model_world, object_errors
    from ditflow.toyworld.world import shape_region

    pre, backbone, _, model = _probe.load(args.model)
    clips = [c for _, c in _probe.references(args.model, pre, args.refs)]
    latents = torch.cat([backbone.encode_video(c.frames) for c in clips])  # [B, F, C, h, w]
    spatial = pre.height // latents.shape[-1]
    shapes = model_world(resolve_model(args.model).folder).shapes
    masks = [latent_mask(c, spatial) if args.region == "object" else to_latent_grid(shape_region(c, shapes), spatial)
             for c in clips]
    mask = torch.from_numpy(np.stack(masks))[:, :, None].float()
    prompts = {v: [c.prompt if v == "right" else "" if v == "empty" else swap_word(c.prompt, v, i, shapes)
                   for i, c in enumerate(clips)] for v in VARIANTS}
    texts = {v: torch.cat([backbone.encode_prompt(p) for p in ps]) for v, ps in prompts.items()}
    alphas = backbone.scheduler.alphas_cumprod.float()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for t in (int(s) for s in args.timesteps.split(",")):
        xt, target = noised(alphas, latents, noise, torch.tensor(t))
        row = {"timestep": t}
        for v in VARIANTS:
            with torch.no_grad():
                pred = model.forward(xt, torch.tensor(t), texts[v]).float()
            row[v] = float(object_errors(pred, target, mask).mean())
        rows.append(row)
        print(f"t={t:4d}  " + "  ".join(f"{v} {row[v]:.4f} (x{row[v] / row['right']:.3f})" for v in VARIANTS), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "probe_text", "model": args.model, "refs": args.refs,
                                    "region": args.region,
                                    "measure": f"mean squared v-prediction error on {args.region} latent pixels",
                                    "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
