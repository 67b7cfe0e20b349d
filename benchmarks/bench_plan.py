"""Benchmark: the simulated GPU memory and roofline time of every model x variant at the real shapes, no weights
(`ditflow plan`'s simulation), and the validation of the simulation against measured runs.

    python benchmarks/bench_scale.py --simulate             # (make bench-scale ARGS=--simulate) every preset's shape
    python benchmarks/bench_plan.py --models 5b,wan-1.3b    # a subset
    python benchmarks/bench_plan.py --validate              # simulated against measured peaks on this CPU

Each row runs `ditflow.plan.plan_run` in a process of its own (the paper-style row patches the loss) and records
the peak under each placement: everything on the GPU, gradient checkpointing, model offload (+ checkpointing),
and the text encoder on the CPU; the guided step's roofline time on an H100. The memory goals of the issue that
asked for the planner are checked at the end. Validation: the same phases run on real weights on this CPU and
counted by the same tracker (ditflow.plan.ledger: the bytes of every live tensor storage), for the tiny model,
the toy models at their real size and the scale benchmark's quick shape.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
# (model, frame counts) at the presets' sizes: the model cards' lengths and the paper's 24/49
SHAPES = {"2b": (49,), "5b": (24, 49), "1.5-5b": (81,), "cogvideox-5b-i2v": (49,), "cogvideox1.5-5b-i2v": (81,),
          "wan-1.3b": (81,), "wan-14b": (81,), "wan2.2-a14b": (81,), "wan2.2-ti2v-5b": (121,), "wan-i2v-14b-480p": (81,),
          "wan-i2v-14b-720p": (81,), "wan2.2-i2v-a14b": (81,), "hunyuan1.5-480p": (121,), "hunyuan1.5-720p": (121,),
          "hunyuan1.5-i2v-480p": (121,), "hunyuan1.5-i2v-720p": (121,), "ltx2": (121,), "ltx2-i2v": (121,)}
VARIANTS = ("default", "emb", "fast", "paper", "unguided", "flowmotion", "ropecraft", "fastvmt")
PLACEMENTS = {"all on GPU": dict(),
              "checkpointing": dict(checkpointing=True),
              "checkpointing + tiling": dict(checkpointing=True, vae_tiling=True),
              "offload": dict(offload=True),
              "offload + tiling": dict(offload=True, vae_tiling=True),  # the official DiTFlow code's placement
              "offload + checkpointing": dict(checkpointing=True, offload=True),
              "offload + checkpointing + tiling": dict(checkpointing=True, offload=True, vae_tiling=True),
              "offload + checkpointing + tiling + CPU text": dict(checkpointing=True, offload=True, vae_tiling=True,
                                                                  text_encoder="cpu")}


def simulate_one(job: dict) -> dict:
    """One row in this process: the plan of (model, frames, variant) under every placement."""
    from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
    from ditflow.errors import InputError
    from ditflow.plan.api import planned_model
    from ditflow.plan.estimate import Placement, plan_of
    from ditflow.plan.gpus import GPUS
    from ditflow.plan.simulate import simulate

    variant = job["variant"]
    if variant == "paper":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_scale import paper_style

        paper_style()
    settings = {"emb": {"opt_mode": "emb"}, "fast": {"fast": True}, "unguided": {"guidance": False, "injection": False}}
    settings = settings.get(variant, {"method": variant} if variant in ("flowmotion", "ropecraft", "fastvmt") else {})
    start = time.perf_counter()
    try:
        with planned_model(job["model"]) as spec:
            ecfg = spec.extract_config(ExtractConfig(model=job["model"], frames=job["frames"]))
            gcfg = spec.guide_config(GuideConfig(prompt="a red box moving on a road", **settings))
            image = spec.adapter.needs_image
            sim = simulate(spec, ecfg, gcfg, RuntimeOptions(device="cpu", quiet=True), image=image,
                           checkpointing=(False,) if variant == "paper" else (False, True))
    except InputError as e:
        return {"error": f"refused: {e}"}
    from ditflow.config import guidance_steps

    guided = len(guidance_steps(gcfg.steps, gcfg.guidance_range)) if gcfg.guidance else 0
    out = {"peaks": {}, "seconds_simulated": time.perf_counter() - start, "height": ecfg.height, "width": ecfg.width,
           "attention": sorted(sim.attention)}
    for name, p in PLACEMENTS.items():
        if variant == "paper" and p.get("checkpointing"):
            continue
        plan = plan_of(sim, Placement(**p), GPUS["h100"], gcfg.steps, guided)
        out["peaks"][name] = plan.peak_bytes
        if name == "all on GPU":
            out["h100_seconds"] = plan.seconds
            out["phases"] = {ph.name: ph.peak for ph in plan.phases}
    out["weights"] = sim.weights
    return out


def spawn(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--job", json.dumps(job)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    names = list(PLACEMENTS)
    lines = ["| model | frames | variant | " + " | ".join(f"{n} (GiB)" for n in names) + " | H100 s / guided step |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['frames']} | {r['variant']} | {r['error']} |" + " |" * len(names))
            continue
        cells = [f"{r['peaks'][n] / GIB:.1f}" if n in r["peaks"] else "" for n in names]
        step = f"{r['h100_seconds']['guided step']:.1f}" if "h100_seconds" in r else ""
        lines.append(f"| {r['model']} | {r['frames']} | {r['variant']} | " + " | ".join(cells) + f" | {step} |")
    return "\n".join(lines)


_OFFLOAD = tuple(n for n in PLACEMENTS if n.startswith("offload"))
GOALS = (("5b", 49, "CogVideoX-5B 49 frames <= 24 GB without offload", ("all on GPU", "checkpointing",
                                                                        "checkpointing + tiling"), 24e9),
         ("5b", 49, "CogVideoX-5B 49 frames <= 16 GB with offload", _OFFLOAD, 16e9),
         ("wan-1.3b", 81, "Wan 2.1-1.3B 81 frames <= 10 GB", tuple(PLACEMENTS), 10e9),
         ("wan2.2-ti2v-5b", 121, "Wan 2.2 TI2V-5B 121 frames 704x1280 <= 24 GB", tuple(PLACEMENTS), 24e9),
         ("wan2.2-a14b", 81, "Wan 2.2 A14B 81 frames, one expert resident (offload) <= 80 GB",
          _OFFLOAD, 80e9))


def goals(rows: list[dict]) -> list[str]:
    """Each goal: met by the leanest allowed placement of the default run (its peak with the plan's margin), or not."""
    from ditflow.plan.estimate import MARGIN_BYTES, MARGIN_FRACTION

    out = []
    for model, frames, what, allowed, limit in GOALS:
        row = next((r for r in rows if r["model"] == model and r["frames"] == frames and r["variant"] == "default"
                    and "error" not in r), None)
        if row is None:
            out.append(f"- {what}: not simulated in this run")
            continue
        best = min(allowed, key=lambda n: row["peaks"].get(n, float("inf")))
        need = row["peaks"][best] * (1 + MARGIN_FRACTION) + MARGIN_BYTES
        verdict = "met" if need <= limit else "not met"
        out.append(f"- {what}: {verdict} ({best}: peak {row['peaks'][best] / 1e9:.1f} GB, {need / 1e9:.1f} GB with the margin)")
    return out


def validate(names: list[str] | None = None) -> list[dict]:
    """Simulated against measured (the same ledger on real weights, this CPU) for small models that fit here."""
    import tempfile

    from ditflow.backbones import resolve_model
    from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
    from ditflow.plan.simulate import measure, simulate
    from ditflow.tiny import build_tiny_pipeline, build_tiny_wan_pipeline

    from scale_models import build_folder

    tmp = tempfile.mkdtemp(prefix="bench-plan-")
    cases = {"tiny CogVideoX": lambda: (str(build_tiny_pipeline(Path(tmp) / "tiny")), dict(frames=9, height=32, width=48, blocks=(1,))),
             "tiny Wan": lambda: (str(build_tiny_wan_pipeline(Path(tmp) / "tiny-wan")), dict(frames=9, height=32, width=48, blocks=(1,))),
             "toy (real size)": lambda: ("toy", {}), "toy-i2v (real size)": lambda: ("toy-i2v", {}),
             # bench_scale's quick shape: CogVideoX-5B's width, 2 blocks, its real VAE, a one-layer T5, 24 x 32 x 48
             "5b quick shape": lambda: (str(build_folder("5b", Path(tmp) / "5b-quick", True)), dict(frames=24, height=32, width=48))}
    cases = {k: v for k, v in cases.items() if names is None or k in names}
    rt = RuntimeOptions(device="cpu", quiet=True)
    rows = []
    for name, make in cases.items():
        try:
            model, size = make()
            spec = resolve_model(model)
        except Exception as e:  # a toy model not built on this checkout
            rows.append({"case": name, "error": str(e)})
            continue
        ecfg = spec.extract_config(ExtractConfig(model=model, **size))
        gcfg = spec.guide_config(GuideConfig(prompt="a red circle" if "tiny" in name else "a blue bar on a white background"))
        image = spec.adapter.needs_image
        sim, real = simulate(spec, ecfg, gcfg, rt, image=image), measure(spec, ecfg, gcfg, rt, image=image)
        phases = {n: (sim.phases[n].peak, real.phases[n].peak) for n in sim.phases}
        phases |= {f"guided step{' (checkpointing)' if ck else ''}": (sim.guided[ck].peak, real.guided[ck].peak) for ck in sim.guided}
        phases |= {f"decode{' (tiled)' if tiled else ''}": (sim.decode[tiled].peak, real.decode[tiled].peak) for tiled in sim.decode}
        rows.append({"case": name, "phases": {n: {"simulated": s, "measured": m, "ratio": s / m if m else None}
                                              for n, (s, m) in phases.items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(SHAPES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--validate", action="store_true", help="simulated against measured peaks on this CPU")
    ap.add_argument("--cases", help="with --validate: comma-separated case names (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "plan.json")
    ap.add_argument("--render", help="comma-separated result files: print their rows' table and the goals (markdown)")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.job:
        print(json.dumps(simulate_one(json.loads(args.job))))
        return
    if args.render:
        rows = [r for f in args.render.split(",") for r in json.loads(Path(f).read_text()).get("rows", [])]
        print(table(rows))
        print("\n".join(goals(rows)))
        return
    t0 = time.time()
    result = {"benchmark": "plan (simulated: fake tensors, no weights)", "date": _dt.datetime.now().isoformat(timespec="seconds")}
    if args.validate:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        result["validation"] = validate(args.cases.split(",") if args.cases else None)
        for r in result["validation"]:
            print(r["case"], r.get("error") or {n: round(v["ratio"], 3) for n, v in r["phases"].items() if v["ratio"]})
    else:
        rows = []
        for model in args.models.split(","):
            for frames in SHAPES[model]:
                for variant in args.variants.split(","):
                    r = {"model": model, "frames": frames, "variant": variant, **spawn({"model": model, "frames": frames,
                                                                                        "variant": variant})}
                    rows.append(r)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps({**result, "rows": rows}, indent=1))  # a stopped run keeps its rows
                    print(f"{model:16s} {frames:3d} {variant:10s} " + (r["error"] if "error" in r else " ".join(
                        f"{n}: {v / GIB:.1f}" for n, v in r["peaks"].items())), flush=True)
        result["rows"] = rows
        print(table(rows))
        result["goals"] = goals(rows)
        print("\n".join(result["goals"]))
    result["seconds_total"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
