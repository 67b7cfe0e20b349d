"""The planner against measured GPU peaks: the one prepared script for a session lent a GPU.

    python benchmarks/check_plan_gpu.py           # a GPU: Wan 2.1-1.3B 81 f, CogVideoX-5B 49 f, Wan 2.2 TI2V-5B 121 f,
                                                  # each default and --fast (random weights at the real configs)
    python benchmarks/check_plan_gpu.py --quick   # the same plumbing at bench_scale's quick shape, on any machine

For each configuration: `ditflow.plan.plan_run` on the benchmark's model folder (its config files: the same 1-layer
text encoder as bench_scale builds) picks the placement that fits the GPU's free memory and predicts the guide
run's peak (the largest of its text encoding, guided step, unguided step and decode, with and without the margin);
then `ditflow.guide` runs in a process of its own with that placement and torch.cuda.max_memory_allocated is read
(bench_scale.run_one). Without a GPU only the predictions are written (the CPU's own check, simulated against
measured, is `bench_plan.py --validate`). Results: --out, with the GPU named.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_scale as scale  # noqa: E402

CONFIGS = (("wan-1.3b", 81), ("5b", 49), ("wan2.2-ti2v-5b", 121))
VARIANTS = ("default", "fast")
GUIDE_PHASES = ("text encoding", "guided step", "unguided step", "decode")


def predicted(folder: str, frames: int, height: int, width: int, fast: bool, quick: bool, limit: int | None):
    from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
    from ditflow.plan.api import plan_run

    settings = {k: scale.QUICK[k] for k in ("steps", "guidance_range", "opt_steps")} if quick else {}
    report = plan_run(folder, ExtractConfig(frames=frames, height=height, width=width),
                      GuideConfig(prompt="a red box moving on a road", fast=fast, **settings), RuntimeOptions(),
                      limit=limit, search_frames=False)
    plan = report.shown
    guide_peak = max(p.peak for p in plan.phases if p.name in GUIDE_PHASES)
    return plan, guide_peak


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "plan-vs-gpu.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    mode = "quick" if args.quick else "full"
    limit = torch.cuda.mem_get_info()[0] if cuda else None
    rows = []
    for name, frames in CONFIGS:
        frames = scale.QUICK_FRAMES.get(name, scale.MODELS[name][1][0]) if args.quick else frames
        folder = scale.build_folder(name, args.work / mode / "models" / name, args.quick)
        height, width = scale.QUICK_SIZE.get(name, scale.QUICK["size"]) if args.quick else scale.MODELS[name][0]
        video = scale.reference_clip(frames, height, width, args.work / mode / "refs" / f"{frames}x{height}x{width}")
        cache = args.work / mode / "check-cache"
        ext = scale.spawn({"model": str(folder), "cache": str(cache), "quick": args.quick, "stage": "extract",
                           "videos": [(frames, str(video))], "variant": "default"})
        for variant in VARIANTS:
            plan, guide_peak = predicted(str(folder), frames, height, width, variant == "fast", args.quick, limit)
            p = plan.placement
            row = {"model": name, "frames": frames, "variant": variant, "placement": p.flags(),
                   "predicted_bytes": guide_peak, "predicted_with_margin_bytes": plan.needed_bytes}
            if cuda and "error" not in ext:
                runtime = {"gradient_checkpointing": p.checkpointing, "cpu_offload": p.offload, "vae_tiling": p.vae_tiling,
                           "text_encoder": p.text_encoder}
                got = scale.spawn({"model": str(folder), "cache": str(cache), "quick": args.quick, "stage": "guide",
                                   "amf": ext["amf"][str(frames)], "variant": variant, "runtime": runtime})
                row["measured_bytes"] = got.get("peak_bytes")
                row["error"] = got.get("error")
            if row.get("measured_bytes"):
                row["ratio"] = row["predicted_bytes"] / row["measured_bytes"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"check": "plan vs measured", "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name() if cuda else "cpu (no GPU: plumbing only)", "mode": mode, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
