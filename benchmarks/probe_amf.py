"""Probe: how well each block's AMF recovers the true object motion, at each noise level.

    python benchmarks/probe_amf.py [--model toy] [--refs 16] [--timesteps 0,200,400,500,600,700,800,900] [--mode soft]

For held-out world clips, the reference latent is noised to timestep t (fixed noise seeds), one forward
pass records every block's q/k, and the argmax AMF is compared with the true displacement of the object's
patches between every pair of latent frames: the score is the fraction of object patches whose AMF lands
within 1 patch of the truth (a zero-motion guess scores what the "still" column says). This picks the
guidance block and the range of timesteps where guidance can see motion. A second table gives the error
(patches) of the object's mean displacement (the AMF averaged over its patches, per frame pair): the
target's quality where every patch of a uniform object looks alike. `--mode soft` scores the soft AMF (expected
key positions, `--reference-flow soft`) instead of the argmax. Writes JSON and prints both tables.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def true_displacements(clip, grid, patch_px: int, temporal: int) -> tuple[np.ndarray, np.ndarray]:
    """Object patches and their true displacement (patches) for every latent frame pair:
    mask [F, P] bool, disp [F, F, 2] (the object's centre moves rigidly, pans included)."""
    f, h, w = grid
    idx = [min(k * temporal, len(clip.frames) - 1) for k in range(f)]  # the pixel frame a latent frame ends on
    traj = clip.trajectories[0][idx] / patch_px  # [F, 2]
    m = clip.masks[0][idx].reshape(f, h, patch_px, w, patch_px).mean(axis=(2, 4)) >= 0.5
    return m.reshape(f, h * w), traj[None, :, :] - traj[:, None, :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--refs", type=int, default=16)
    ap.add_argument("--timesteps", default="0,200,400,500,600,700,800,900")
    ap.add_argument("--mode", choices=("argmax", "soft"), default="argmax", help="the AMF scored (soft: temperature 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "probe_amf.json")
    args = ap.parse_args()

    import torch

    from benchmarks import _probe
    from ditflow.amf import attention_motion_flow
    from ditflow.processors import QKRecorder

    pre, backbone, geo, model = _probe.load(args.model)
    layers = backbone.num_blocks
    patch_px = pre.height // geo.grid[1]
    text = backbone.encode_prompt("")
    sched = backbone.scheduler
    timesteps = [int(t) for t in args.timesteps.split(",")]
    hits = np.zeros((layers, len(timesteps)))
    mean_err = np.zeros((layers, len(timesteps)))  # summed over frame pairs with object patches
    n_pairs, still_mean = 0, 0.0
    total = 0.0
    still = 0.0
    for seed, clip in _probe.references(args.model, pre, args.refs):
        mask, disp = true_displacements(clip, geo.grid, patch_px, backbone.pipe.vae_scale_factor_temporal)
        latent = backbone.encode_video(clip.frames)
        f = geo.grid[0]
        pairs = [(i, j) for i in range(f) for j in range(f) if i != j]
        n_obj = sum(mask[i].sum() for i, _ in pairs)
        total += n_obj
        n_pairs += sum(mask[i].any() for i, _ in pairs)
        still_mean += sum(np.linalg.norm(disp[i, j]) for i, j in pairs if mask[i].any())
        still += sum((mask[i] & (np.linalg.norm(disp[i, j]) <= 1.0)).sum() for i, j in pairs)
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed + 1)).to(latent)
        for ti, t in enumerate(timesteps):
            tt = torch.tensor(t)
            x = latent if t == 0 else sched.add_noise(latent, noise, tt.reshape(1))
            recorders = {b: QKRecorder() for b in range(layers)}
            with torch.no_grad(), backbone.install(recorders):
                model.forward(x, tt, text)
            for b, r in recorders.items():
                flow = attention_motion_flow(r.q.float(), r.k.float(), geo.grid, mode=args.mode).numpy()  # [F, F, P, 2]
                for i, j in pairs:
                    err = np.linalg.norm(flow[i, j] - disp[i, j], axis=-1)
                    hits[b, ti] += (mask[i] & (err <= 1.0)).sum()
                    if mask[i].any():
                        mean_err[b, ti] += np.linalg.norm(flow[i, j][mask[i]].mean(axis=0) - disp[i, j])
    acc, mean_err = hits / total, mean_err / n_pairs
    result = {"model": args.model, "refs": args.refs, "mode": args.mode, "timesteps": timesteps, "accuracy": acc.tolist(),
              "object_mean_error": mean_err.tolist(), "still_guess": still / total,
              "still_object_mean_error": still_mean / n_pairs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("block | " + " | ".join(f"t={t}" for t in timesteps))
    for b in range(layers):
        print(f"{b:5d} | " + " | ".join(f"{100 * a:5.1f}" for a in acc[b]))
    print(f"still guess: {100 * still / total:.1f}%\n\nerror of the object's mean displacement (patches)")
    print("block | " + " | ".join(f"t={t}" for t in timesteps))
    for b in range(layers):
        print(f"{b:5d} | " + " | ".join(f"{e:5.2f}" for e in mean_err[b]))
    print(f"still guess: {still_mean / n_pairs:.2f}   wrote {args.out}")


if __name__ == "__main__":
    main()
