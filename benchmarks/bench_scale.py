"""Benchmark: memory and time of a whole guided run at the real models' sizes, random weights.

    python benchmarks/bench_scale.py            # the real shapes (a GPU): 2b, 5b, wan-1.3b, wan-14b at 24/49 (Wan 25/49/81)
                                                # frames; 1.5-5b at 81 (768x1360), wan2.2-a14b at 81, wan2.2-ti2v-5b
                                                # at 121 (704x1280), HunyuanVideo 1.5 480p/720p and LTX-2 at 121
(Wan takes 4k+1 frames: 25 stands for 24; --quick runs each model's first frame count.)
    python benchmarks/bench_scale.py --simulate # no GPU, no weights: every model x variant simulated (bench_plan.py)
    python benchmarks/bench_scale.py --quick    # 2 CPU cores, < 12 min: 2 blocks (per expert) at the real width, 32x48
                                                # pixels (32x64 on TI2V-5B's 16x VAE), 2 steps

Each model is its preset's released configuration (ditflow.released) with random weights (scale_models.py): time
and memory do not depend on weight values, and nothing is downloaded. The text encoders keep their real width but
one layer (the real ones weigh 9.5 to 24 GB: `ditflow plan` shows them). The folders are written once under --work.

Every (model, frames, variant) runs `ditflow.guide` (latent mode, the paper's settings, as a user would) in a
process of its own after one `ditflow.extract` process per (model, frames):
- default: ditflow as shipped;
- fast: `--fast`;
- offload: `--cpu-offload` (a GPU only);
- paper: the paper-style baseline: the full per-head attention map of the paper's code (`ditflow.amf.reference`), no
  gradient checkpointing, every block run in each guided forward;
- unguided: `--no-guidance --no-injection`, the model alone (what a method without backpropagation should cost);
- flowmotion, ropecraft, fastvmt: `--method NAME` (their own settings as published; the shape's steps, guidance
  range and Adam steps as the others'). RoPECraft needs RoPE: on 2b its row is the one-line refusal.
Each variant takes its own noise seed, so none is a cache hit of another (the work does not depend on the seed).
Peak memory is the device's (torch.cuda.max_memory_allocated) on a GPU; on a CPU the process's peak resident
memory (VmHWM), reported whole and above the loaded model (the resident memory right after loading). Results go to --out with the ratios to the paper baseline
measured in the same run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT / "benchmarks"))
from scale_models import MODELS, QUICK_FRAMES, QUICK_MODELS, QUICK_SIZE, build_folder  # noqa: E402

VARIANTS = ("default", "fast", "offload", "paper", "unguided", "flowmotion", "ropecraft", "fastvmt")
METHOD_VARIANTS = ("flowmotion", "ropecraft", "fastvmt")  # --method NAME with its published defaults
# one guided step of 3 Adam steps (the paper: 10 of 5), at 6 (24/25 frames) or 13 (49) latent frames of 2x3 patches
QUICK = dict(blocks=2, size=(32, 48), steps=2, guidance_range=(2, 1), opt_steps=3)


def reference_clip(frames: int, height: int, width: int, path: Path) -> Path:
    """A bright square crossing a textured background (what the AMF follows)."""
    import numpy as np

    from ditflow.video import write_video

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    video = np.repeat((rng.random((height, width, 3)) * 80).astype(np.uint8)[None], frames, axis=0)
    side = height // 4
    for t in range(frames):
        x = int((width - side) * t / max(frames - 1, 1))
        video[t, height // 3: height // 3 + side, x: x + side] = 255
    return write_video(video, path, fmt="png")


# --------------------------------------------------------------------------------------- one measurement
def resident(field: str = "VmRSS") -> int:
    """Resident bytes of this process: now (VmRSS) or at its peak (VmHWM, the high-water mark of this process
    image: unlike getrusage's ru_maxrss it does not keep the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def paper_style() -> None:
    """The paper-style baseline in this process, as the official code (github.com/ditflow/ditflow) computes it: every
    head's full attention map in the model's dtype (its matmuls run under bf16 autocast), every block run, no
    gradient checkpointing (its transformer checkpoints only in train mode, and it runs in eval mode)."""
    from ditflow import guides, losses
    from ditflow.amf.reference import plain_attention_motion_flow

    class PaperFlowLoss(losses.FlowLoss):
        def block_loss(self, b, q, k):
            flow = plain_attention_motion_flow(q, k, self.grid, self.temperature, mode="soft").float()
            return losses.amf_loss(flow, self.target.get(b, self.amf[b]), self.threshold, None, self.amf[b].norm(dim=-1) > 0)

    losses.LOSSES["flow"] = PaperFlowLoss
    guides.Guide.stop_early = False


def run_one(job: dict) -> dict:
    """One extract or guide in this process: its seconds and peak memory."""
    import torch

    import ditflow
    from ditflow import stages
    from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
    from ditflow.errors import InputError
    from ditflow.store import Store

    store = Store(job["cache"])
    cuda = torch.cuda.is_available()
    loaded = {}
    load = stages.load_backbone

    def load_and_note(*a, **kw):  # the resident memory of the loaded model, to report a run's own
        backbone = load(*a, **kw)
        loaded["bytes"] = torch.cuda.memory_allocated() if cuda else resident()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        return backbone

    stages.load_backbone = load_and_note
    rt = RuntimeOptions(quiet=True, cpu_offload=job["variant"] == "offload" or None,
                        gradient_checkpointing=False if job["variant"] == "paper" else None, **job.get("runtime", {}))
    if job["variant"] == "paper":
        paper_style()
    start = time.perf_counter()
    try:
        if job["stage"] == "extract":  # every frame count of one model in one process
            result = {"amf": {str(f): ditflow.extract(v, ExtractConfig(model=job["model"], frames=f), runtime=rt,
                                                      store=store).hash for f, v in job["videos"]}}
        else:
            quick = {k: QUICK[k] for k in ("steps", "guidance_range", "opt_steps")} if job["quick"] else {}
            variant = job["variant"]
            method = {"method": variant} if variant in METHOD_VARIANTS else {}
            alone = {"guidance": False, "injection": False} if variant == "unguided" else {}
            cfg = GuideConfig(prompt="a red box moving on a road", fast=variant == "fast",
                              seed=VARIANTS.index(variant), **quick, **method, **alone)
            gen = ditflow.guide(job["amf"], cfg, runtime=rt, store=store)
            seconds = gen.meta["seconds"]
            steps = seconds["guidance_steps"]
            result = {"gen": gen.hash, "seconds_per_guided_step": sum(steps) / max(len(steps), 1), "guided_steps": len(steps),
                      "seconds_sampling": seconds["sample"], "seconds_load": seconds["load"], "seconds_decode": seconds["decode"]}
    except torch.cuda.OutOfMemoryError as e:
        result = {"error": f"out of memory: {str(e).splitlines()[0]}"}
    except InputError as e:  # a method that cannot apply to this model (RoPECraft without RoPE)
        result = {"error": f"refused: {e}"}
    peak = torch.cuda.max_memory_allocated() if cuda else resident("VmHWM")
    return {**result, "seconds_total": time.perf_counter() - start, "peak_bytes": peak,
            "peak_above_model_bytes": peak - loaded.get("bytes", 0) if cuda else peak - loaded.get("bytes", peak),
            "memory": "cuda max_memory_allocated" if cuda else "process peak RSS"}


def spawn(job: dict) -> dict:
    """`run_one` in a fresh process (each variant's peak memory is its own)."""
    out = subprocess.run([sys.executable, __file__, "--job", json.dumps(job)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- the table
def ratios(rows: list[dict]) -> None:
    """Each row's peak memory and seconds against the paper-style baseline of its (model, frames)."""
    base = {(r["model"], r["frames"]): r for r in rows if r["variant"] == "paper" and "error" not in r}
    for r in rows:
        b = base.get((r["model"], r["frames"]))
        if b is None or "error" in r:
            continue
        r["vs_paper"] = {"peak_bytes": r["peak_bytes"] / b["peak_bytes"],
                         "peak_above_model_bytes": r["peak_above_model_bytes"] / max(b["peak_above_model_bytes"], 1),
                         "seconds_per_guided_step": r["seconds_per_guided_step"] / b["seconds_per_guided_step"],
                         "seconds_sampling": r["seconds_sampling"] / b["seconds_sampling"]}


def table(result: dict) -> str:
    gib = 2 ** 30
    lines = ["| model | frames | variant | peak (GiB) | above model (GiB) | s / guided step | s sampling | "
             "× paper: peak | × paper: step | × paper: sampling |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['frames']} | {r['variant']} | {r['error']} | | | | | | |")
            continue
        v = r.get("vs_paper", {})

        def x(k):
            return f"{v[k]:.2f}" if k in v else ""

        lines.append(f"| {r['model']} | {r['frames']} | {r['variant']} | {r['peak_bytes'] / gib:.2f} | "
                     f"{r['peak_above_model_bytes'] / gib:.2f} | {r['seconds_per_guided_step']:.2f} | {r['seconds_sampling']:.1f} | "
                     f"{x('peak_bytes')} | {x('seconds_per_guided_step')} | {x('seconds_sampling')} |")
    return "\n".join(lines)


def main() -> None:
    if "--simulate" in sys.argv:  # no GPU, no weights: the planner's simulation of every model x variant
        sys.argv.remove("--simulate")
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_plan import main as simulated

        return simulated()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the CPU check: 2 blocks at the real width, 64x96, 2 steps")
    ap.add_argument("--models", default=None, help=f"comma-separated (default: {', '.join(MODELS)}; with --quick "
                    f"{', '.join(QUICK_MODELS)})")
    ap.add_argument("--frames", default=None, help="comma-separated (default: each model's, see MODELS)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "scale.json")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        print(json.dumps(run_one(json.loads(args.job))))
        return

    import torch

    cuda = torch.cuda.is_available()
    variants = [v for v in args.variants.split(",") if v != "offload" or cuda]  # offloading needs a GPU to offload from
    mode = "quick" if args.quick else "full"
    rows, t0 = [], time.time()
    # the runs' cache is this invocation's own, so no run is a cache hit of an earlier one (removed at the end)
    args.work.mkdir(parents=True, exist_ok=True)
    runs = tempfile.TemporaryDirectory(prefix="cache-", dir=args.work)
    for name in (args.models or ",".join(QUICK_MODELS if args.quick else MODELS)).split(","):
        if name not in MODELS:
            raise SystemExit(f"bench_scale: unknown model {name!r} (known: {', '.join(MODELS)})")
        folder = build_folder(name, args.work / mode / "models" / name, args.quick)
        height, width = QUICK_SIZE.get(name, QUICK["size"]) if args.quick else MODELS[name][0]
        quick_frames = [QUICK_FRAMES.get(name, MODELS[name][1][0])]
        frame_counts = [int(f) for f in args.frames.split(",")] if args.frames else quick_frames if args.quick else MODELS[name][1]
        job = {"model": str(folder), "cache": runs.name, "quick": args.quick}
        videos = [(f, str(reference_clip(f, height, width, args.work / mode / "refs" / f"{f}x{height}x{width}")))
                  for f in frame_counts]
        ext = spawn({**job, "stage": "extract", "videos": videos, "variant": "default"})
        if "error" in ext:
            rows.append({"model": name, "frames": None, "variant": "extract", **ext})
            continue
        for frames in frame_counts:
            for variant in variants:
                r = {"model": name, "frames": frames, "variant": variant,
                     **spawn({**job, "stage": "guide", "amf": ext["amf"][str(frames)], "variant": variant})}
                rows.append(r)
                print(f"{name:9s} {frames:3d} {variant:8s} " + (r["error"] if "error" in r else
                      f"peak {r['peak_bytes'] / 2**30:6.2f} GiB  step {r['seconds_per_guided_step']:7.2f} s  "
                      f"sampling {r['seconds_sampling']:7.1f} s"), flush=True)
    runs.cleanup()
    ratios(rows)
    result = {"benchmark": "scale", "mode": mode, "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()}, "
                                                                   f"{os.cpu_count()} cores)",
              "shape": QUICK if args.quick else "the models' own", "seconds_total": time.time() - t0, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
