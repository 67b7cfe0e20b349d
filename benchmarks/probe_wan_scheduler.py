"""Probe: how much of a change the guide makes to the latent survives the next scheduler step, with Wan's
own UniPC (corrector on) and with flow-match Euler (what ditflow's latent mode uses on Wan).

    python benchmarks/probe_wan_scheduler.py [--model FOLDER] [--out bench-results/wan-scheduler.json]

A latent x_t is denoised for a few steps; at the guided step a small random change d is added (what the
guide's Adam steps do) and both x_t and x_t + d are stepped from the same scheduler state. "kept" is
|step(x_t + d) - step(x_t)| / |d|: about 1 when the step carries the change on, near 0 when the scheduler
rebuilds its sample from its history and discards it. Without --model it builds a tiny random Wan.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def kept_fraction(model: str, euler: bool, steps: int = 8, at: int = 3, size: float = 0.05, seed: int = 0) -> float:
    import torch

    from ditflow.backbones import load_backbone
    from ditflow.config import RuntimeOptions

    bb = load_backbone(model, "float32", RuntimeOptions(device="cpu", quiet=True), keeps_latent=euler)
    geo = bb.geometry(9, 32, 32)
    text = bb.encode_prompt("a red circle")
    timesteps = bb.timesteps(steps)
    x = bb.initial_noise(geo, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            if i == at:
                d = size * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1))
                saved = copy.deepcopy(bb.pipe.scheduler)
                plain = bb.step(bb.forward(x, t, text, geo).float(), t, x, None)[0]
                bb.pipe.scheduler = saved
                moved = bb.step(bb.forward(x + d, t, text, geo).float(), t, x + d, None)[0]
                return float((moved - plain).norm() / d.norm())
            x = bb.step(bb.forward(x, t, text, geo).float(), t, x, None)[0]
    raise ValueError("--at is past the last step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a Wan pipeline folder (default: a tiny random one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "wan-scheduler.json")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from ditflow.tiny import build_tiny_wan_pipeline

        model = str(build_tiny_wan_pipeline(Path(tempfile.mkdtemp()) / "tiny-wan"))
    rows = {name: kept_fraction(model, euler) for name, euler in (("unipc (the folder's)", False), ("flow-match euler", True))}
    for name, kept in rows.items():
        print(f"{name:22s} kept {kept:.3f} of the guide's change after one step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "wan-scheduler", "model": args.model or "tiny random Wan", "kept": rows}, indent=1))


if __name__ == "__main__":
    main()
