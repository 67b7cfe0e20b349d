"""The toy model's ceiling: how many held-out clips still pass the pixel judge after a VAE round trip.

    python benchmarks/check_vae.py --model assets/toy-cogvideox [--clips 40] [--out bench-results/vae.json]

The transformer can only draw what the VAE can decode, so the judge's prompt-match rate on reconstructions
bounds the backbone's. Clips are the first held-out single-object seeds (as in bench_quality), reported
separately for the benchmark's backgrounds (plain, gradient) and for textured ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditflow.toyworld import judge  # noqa: E402
from ditflow.toyworld.references import held_out_clips, model_world  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "assets" / "toy-cogvideox"), help="pipeline folder")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--out", default=None, help="JSON report path (default: print only)")
    args = ap.parse_args()
    from diffusers import AutoencoderKLCogVideoX

    vae = AutoencoderKLCogVideoX.from_pretrained(Path(args.model) / "vae").eval()
    info = json.loads((Path(args.model) / "ditflow.json").read_text())
    size, frames = info.get("height", 64), info.get("frames", 17)
    rows, world = [], model_world(Path(args.model))
    max_area = judge.max_area_for(world.radius)
    for seed, clip in held_out_clips(args.clips, frames, size, size, world.radius, shapes=world.shapes):
        x = torch.from_numpy(clip.frames.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
            y = vae.decode(z).sample
        rec = ((y[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        m_in = judge.prompt_match(clip.frames, clip.prompt, max_area, world.shapes)
        m_out = judge.prompt_match(rec, clip.prompt, max_area, world.shapes)
        rows.append({"seed": seed, "background": clip.background, "pixel_error": float(np.abs(
            rec.astype(np.float32) - clip.frames).mean()), "input_match": bool(m_in.ok), "colour": bool(m_out.colour),
            "shape": bool(m_out.shape), "match": bool(m_out.ok)})
    report = {}
    for name, keep in (("plain+gradient", lambda r: r["background"] != "textured"),
                       ("textured", lambda r: r["background"] == "textured"), ("all", lambda r: True)):
        sel = [r for r in rows if keep(r)]
        if sel:
            report[name] = {"clips": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in
                                                  ("pixel_error", "input_match", "colour", "shape", "match")}}
    for name, r in report.items():
        print(f"{name:15s} n={r['clips']:3d}  pixel error {r['pixel_error']:5.1f}/255  judge on input "
              f"{r['input_match']:.0%}  after VAE: colour {r['colour']:.0%} shape {r['shape']:.0%} match {r['match']:.0%}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "summary": report, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
