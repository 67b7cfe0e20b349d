"""Probe: how the stored AMF's agreement with the true motion changes with the extraction timestep.

    python benchmarks/probe_extract_timestep.py [--model toy] [--refs 16] [--timesteps 0,100,300,500,700,875] [--seeds 1,2]

`ditflow.extract` runs as a user would (`ExtractConfig(timestep=t, seed=s)`: the reference latent noised to t
with the run's seed before the one extraction forward) on held-out clips of the toy model's world, and each
stored AMF (the model's guidance blocks) is scored against the true displacement of the object's patches between
every pair of latent frames, as probe_amf.py scores it: the share of object patches whose AMF lands within 1 patch
of the truth (a zero-motion guess scores the "still" line), and the error (patches) of the object's mean
displacement. Wan 2.2 A14B's guided expert was trained only at t >= 875, so its extraction timestep trades
that expert's own noise range against the motion the noise hides: this measures the second half on a model
that sees every timestep. Writes JSON and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def score(flow: np.ndarray, mask: np.ndarray, disp: np.ndarray) -> tuple[int, int, float, int]:
    """flow [F, F, P, 2] vs the truth: (object patches within 1 patch, object patches, summed error of the
    object's mean displacement, frame pairs with object patches)."""
    f = flow.shape[0]
    hits = total = pairs = 0
    mean_err = 0.0
    for i in range(f):
        for j in range(f):
            if i == j or not mask[i].any():
                continue
            err = np.linalg.norm(flow[i, j] - disp[i, j], axis=-1)
            hits += int((mask[i] & (err <= 1.0)).sum())
            total += int(mask[i].sum())
            mean_err += float(np.linalg.norm(flow[i, j][mask[i]].mean(axis=0) - disp[i, j]))
            pairs += 1
    return hits, total, mean_err, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--refs", type=int, default=16)
    ap.add_argument("--timesteps", default="0,100,300,500,700,875")
    ap.add_argument("--seeds", default="1,2", help="the runs' seeds (each noises every reference once)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "probe_extract_timestep.json")
    args = ap.parse_args()

    from benchmarks.probe_amf import true_displacements
    from ditflow.backbones import resolve_model
    from ditflow.backbones.loaded import keep_loaded
    from ditflow.config import ExtractConfig, RuntimeOptions
    from ditflow.stages import extract
    from ditflow.store import Store
    from ditflow.toyworld.references import held_out_clips, model_world
    from ditflow.video import write_video

    spec = resolve_model(args.model)
    pre, world = spec.preset, model_world(spec.folder)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    blocks = list(pre.guidance_blocks)
    geo = spec.geometry(pre.frames, pre.height, pre.width)
    patch_px = pre.height // geo.grid[1]
    temporal = (pre.frames - 1) // (geo.latent_frames - 1) if geo.latent_frames > 1 else 1
    table = {t: np.zeros(4) for t in timesteps}  # hits, patches, summed mean error, pairs
    still = np.zeros(2)
    runtime = RuntimeOptions(quiet=True, gradient_checkpointing=False)
    with tempfile.TemporaryDirectory() as work, keep_loaded():
        store = Store(Path(work) / "cache")
        for ref, clip in held_out_clips(args.refs, pre.frames, pre.height, pre.width, world.radius, shapes=world.shapes):
            video = write_video(clip.frames, Path(work) / f"ref{ref}.gif")
            mask, disp = true_displacements(clip, geo.grid, patch_px, temporal)
            zero = score(np.zeros((geo.grid[0], geo.grid[0], mask.shape[1], 2)), mask, disp)
            still += (zero[0], zero[1])
            for t in timesteps:
                for seed in seeds if t else seeds[:1]:  # t = 0 adds no noise: one run
                    art = extract(video, ExtractConfig(model=args.model, timestep=t, seed=seed), runtime=runtime,
                                  store=store, resolved=spec)
                    for b in blocks:
                        got = score(art.amf(b).float().numpy(), mask, disp)
                        table[t] += np.array(got) * (len(seeds) if t == 0 else 1)  # each t weighs every seed once
    rows = [{"timestep": t, "accuracy": h / n, "object_mean_error": e / p} for t, (h, n, e, p) in table.items()]
    result = {"model": args.model, "refs": args.refs, "seeds": seeds, "blocks": blocks, "rows": rows,
              "still_guess": still[0] / still[1]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{args.model}, {args.refs} held-out references, blocks {blocks}, seeds {seeds}")
    print("| timestep | within 1 patch | mean-displacement error (patches) |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['timestep']} | {100 * r['accuracy']:.1f}% | {r['object_mean_error']:.2f} |")
    print(f"still guess: {100 * result['still_guess']:.1f}%   wrote {args.out}")


if __name__ == "__main__":
    main()
