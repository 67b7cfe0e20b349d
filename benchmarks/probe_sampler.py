"""Does the sampler decide whether the toy model draws the prompt's shape? The backbone (no guidance) on the
quality benchmark's new prompts, under sampler variants: prompt match (colour, shape) and which shapes the
judge sees drawn.

    python benchmarks/probe_sampler.py --out bench-results/probe_sampler.json      (make probe-sampler)

Each variant is a JSON object of `CogVideoXPipeline` settings: scheduler ("ddim" or "dpm"), cfg, steps, and
negative ("no-shape": the prompt without its shape word as the negative prompt, so CFG pushes along what the
shape word adds). Each variant also reports which shape the judge sees drawn for each shape asked.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quality import new_prompt, references  # noqa: E402
from ditflow.toyworld import judge  # noqa: E402
from ditflow.toyworld.references import model_world  # noqa: E402

VARIANTS = {  # the model's defaults (DDIM, its CFG and steps) but for what each names
    "default": {},
    "dpm": {"scheduler": "dpm"},
    "cfg1.5": {"cfg": 1.5},
    "cfg5": {"cfg": 5.0},
    "steps100": {"steps": 100},
    "neg-noshape": {"negative": "no-shape"},
}


def without_shape(prompt: str, shapes: tuple[str, ...]) -> str:
    """The prompt with its shape words left out."""
    return " ".join(w for w in prompt.split() if w not in shapes)


def drawn_shape(frames: np.ndarray, match, shapes: tuple[str, ...]) -> str | None:
    """The shape (of the world's `shapes`) the judge sees in the middle frame where the prompt's colour is
    present (None: not found)."""
    present = np.nonzero(match.coverage >= judge.MIN_AREA_FRAC)[0]
    return judge.classify_shape(match.mask[present[len(present) // 2]], shapes) if match.colour and len(present) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy", help="toy, or a toy model folder")
    ap.add_argument("--refs", type=int, default=20)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "probe_sampler.json")
    args = ap.parse_args()

    import torch
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    from ditflow.backbones import resolve_model

    spec = resolve_model(args.model)
    pre, folder = spec.preset, spec.folder
    pipe = CogVideoXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    ddim = pipe.scheduler
    world = model_world(folder)
    max_area = judge.max_area_for(world.radius)
    prompts = [new_prompt(s, c, shapes=world.shapes) for s, c in references(args.refs, pre.frames, pre.height, world)]
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    names = args.variants.split(",")
    if unknown := [n for n in names if n not in VARIANTS]:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    for name in names:
        v = VARIANTS[name]
        pipe.scheduler = (CogVideoXDPMScheduler.from_config(ddim.config, timestep_spacing="trailing")
                          if v.get("scheduler") == "dpm" else ddim)
        t0, counts, drawn = time.time(), collections.Counter(), collections.Counter()
        asked = collections.defaultdict(collections.Counter)
        for prompt in prompts:
            for seed in seeds:
                negative = without_shape(prompt, world.shapes) if v.get("negative") == "no-shape" else pre.negative_prompt
                out = pipe(prompt, negative_prompt=negative, max_sequence_length=16, num_frames=pre.frames,
                           height=pre.height, width=pre.width, guidance_scale=v.get("cfg", pre.cfg),
                           use_dynamic_cfg=False, num_inference_steps=v.get("steps", pre.steps),
                           generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
                frames = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
                m = judge.prompt_match(frames, prompt, max_area, world.shapes)
                counts.update(videos=1, colour=int(m.colour), shape=int(m.shape), both=int(m.ok))
                seen = drawn_shape(frames, m, world.shapes) or "not found"
                drawn[seen] += 1
                asked[judge.parse_prompt(prompt).objects[0][1]][seen] += 1
        n = counts["videos"]
        results[name] = {"settings": v, "videos": n, "prompt_match": counts["both"] / n,
                         "colour_match": counts["colour"] / n, "shape_match": counts["shape"] / n,
                         "drawn": dict(drawn), "drawn_per_asked": {a: dict(c) for a, c in sorted(asked.items())},
                         "seconds": time.time() - t0}
        print(f"{name:10s} match {counts['both'] / n:5.0%}  colour {counts['colour'] / n:5.0%}  drawn {dict(drawn)}",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "probe_sampler", "model": args.model, "refs": args.refs,
                                    "seeds": seeds, "variants": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
