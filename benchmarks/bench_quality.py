"""Benchmark: motion-transfer quality on held-out references of the synthetic world, with the toy model.

    python benchmarks/bench_quality.py [--model toy] [--refs 20] [--seeds 1] [--out bench-results/quality.json]
    python benchmarks/bench_quality.py --setups-file benchmarks/sweep.toml --refs 8 --seeds 1,2,3   (a sweep)

Run as a user would: every video goes through `ditflow.extract`, `ditflow.guide` and `ditflow.inject` (a
private store under --work), then is judged from pixels (`ditflow.toyworld.judge`):
- prompt match: the generated object's colour and shape are those the prompt names;
- path errors (pixels): the centroid path of the prompt's object against the reference object's true path,
  relative (displacements from the first frame, so a different start does not count) and absolute, averaged
  over the videos where the object was found ("object found" says how many);
- motion fidelity (`ditflow eval`'s symmetric MF, built-in LK tracker);
- background residue (0-255): how far the pixels away from the object are from the plain or gradient
  background the prompt asks for (`judge.background_residual`): what guidance paints that it should not.
  World clips score 0.3, after the toy VAE's round trip 6 (at most 12).
References are the first --refs single-object clips of held-out world seeds (training uses seeds from
10,000); each is transferred to a new prompt (another colour, shape and background) drawn from its seed.
"static" is the relative error of an object that never moves, the floor a frozen object would score.

Setups (rows of the table): backbone (no guidance, no injection), injection only, SMM, MOFT, DiTFlow latent,
DiTFlow emb, zero-shot inject (the DiTFlow emb run's embeddings replayed on a second new prompt), and the
methods that followed DiTFlow with their published defaults (FlowMotion, RoPECraft, FastVMT). Each row also
has the peak memory its runs recorded above their loaded model (the gen artifact's `peak_memory`; CPU: the
process's peak resident memory). A
--setups-file (TOML, one [name] table of `ditflow guide` settings each) replaces them, for sweeps; a table's
`blocks` key picks the blocks the reference AMF is extracted from (`ditflow extract --blocks`), default the model's.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions  # noqa: E402
from ditflow.config_file import apply_overrides  # noqa: E402
from ditflow.toyworld import judge  # noqa: E402
from ditflow.toyworld.references import held_out_clips, model_world  # noqa: E402
from ditflow.toyworld.world import BG_COLOURS, COLOURS, SHAPES, World, draw_still, prompt_text  # noqa: E402

SETUPS: dict[str, dict] = {
    "backbone": {"guidance": False, "injection": False},
    "injection only": {"guidance": False, "injection": True},
    "SMM": {"loss": "smm", "opt_mode": "latent"},
    "MOFT": {"loss": "moft", "opt_mode": "latent"},
    "DiTFlow latent": {"loss": "flow", "opt_mode": "latent"},
    "DiTFlow emb": {"loss": "flow", "opt_mode": "emb"},
    "zero-shot inject": {"inject_from": "DiTFlow emb"},
    # the methods that followed DiTFlow, with their published defaults (ditflow/methods/)
    "FlowMotion": {"method": "flowmotion"},
    "RoPECraft": {"method": "ropecraft"},
    "FastVMT": {"method": "fastvmt"},
}


def references(n: int, frames: int, size: int, world: World,
               motions: tuple[str, ...] | None = None) -> list[tuple[int, object]]:
    """The first n held-out seeds whose clip has one object (objects of the model's world: radius and
    shapes), of the given kinds of motion (default: any)."""
    return held_out_clips(n, frames, size, size, world.radius, motions, world.shapes)


def new_scene(seed: int, clip, salt: int = 0, shapes: tuple[str, ...] = SHAPES) -> tuple[str, str, str, str]:
    """(colour, shape, background kind, background colour) of a prompt with another colour, shape (of the world's
    `shapes`) and background colour than the reference's, from its seed."""
    rng = np.random.default_rng(1_000_003 * (salt + 1) + seed)
    colour = str(rng.choice([c for c in COLOURS if c not in clip.colours]))
    shape = str(rng.choice([s for s in shapes if s not in clip.shapes]))
    bg = str(rng.choice([c for c in BG_COLOURS if c != colour]))
    kind = str(rng.choice(["plain", "gradient"]))
    return colour, shape, kind, bg


def new_prompt(seed: int, clip, salt: int = 0, shapes: tuple[str, ...] = SHAPES) -> str:
    """The prompt of `new_scene`: "a red circle on a grey gradient background"."""
    colour, shape, kind, bg = new_scene(seed, clip, salt, shapes)
    return prompt_text([(colour, shape)], kind, bg)


def new_image(seed: int, clip, folder: Path, salt: int = 0, shapes: tuple[str, ...] = SHAPES) -> Path:
    """An image-to-video run's picture (a png under `folder`): `new_scene`'s object drawn where the reference's
    object starts, at its size, so the reference's motion has its object to move (the AMF is per position)."""
    colour, shape, kind, bg = new_scene(seed, clip, salt, shapes)
    out = folder / f"seed{seed:04d}-{salt}.png"
    if not out.exists():
        from PIL import Image

        h, w = clip.frames.shape[1:3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_still(colour, shape, clip.trajectories[0][0], clip.radii[0], kind, bg, h, w, seed)).save(out)
    return out


def judge_video(frames: np.ndarray, prompt: str, clip, ref_frames: np.ndarray, evaluator,
                world: World, image: np.ndarray | None = None) -> dict:
    max_area = judge.max_area_for(world.radius)  # the largest blob the judge takes for an object of this world
    match = judge.prompt_match(frames, prompt, max_area, world.shapes)
    path = judge.centroid_path(match.mask)  # the first object's mask, which object_mask would find again
    rel, ab = judge.path_errors(path, clip.trajectories[0])
    mf = evaluator.score(frames, ref_frames, None).get("motion_fidelity")
    return {"prompt_match": bool(match.ok), "colour_match": bool(match.colour), "shape_match": bool(match.shape),
            "rel_path_error": rel, "abs_path_error": ab, "mf": mf,
            "background_residue": judge.background_residual(frames, prompt, max_area),
            # image-to-video: how far frame 0 is from the picture it animates (mean absolute error, 0-255)
            **({} if image is None else {"frame0_error": float(np.abs(frames[0].astype(int) - image.astype(int)).mean())})}


def mean_of(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict]) -> dict:
    """Means per setup; seconds per video only over videos generated now (a store hit takes ~0 s); the mean
    relative path error per kind of motion shows where a setup fails."""
    def found(key, keep=lambda r: True):  # the values of videos where the object was found
        return [r[key] for r in rows if keep(r) and r.get(key) is not None and np.isfinite(r[key])]

    def mean(key):
        return mean_of(found(key))

    def median(key):
        vals = found(key)
        return float(np.median(vals)) if vals else None

    return {"videos": len(rows), "mf": mean("mf"), "rel_path_error": mean("rel_path_error"),
            "abs_path_error": mean("abs_path_error"), "median_rel_path_error": median("rel_path_error"),
            "background_residue": mean("background_residue"), "frame0_error": mean("frame0_error"),
            "object_found": float(np.mean([np.isfinite(r["rel_path_error"]) for r in rows])),
            "prompt_match": float(np.mean([r["prompt_match"] for r in rows])), "colour_match": float(np.mean([r["colour_match"] for r in rows])),
            "seconds_per_video": mean_of([r["seconds"] for r in rows if not r.get("from_store")]),
            "peak_mb": mean_of([r["peak_mb"] for r in rows if r.get("peak_mb") is not None and not r.get("from_store")]),
            # a store hit's sampling seconds are those its run recorded
            "sample_seconds_per_video": mean_of([r["sample_seconds"] for r in rows if r.get("sample_seconds") is not None]),
            "from_store": int(sum(bool(r.get("from_store")) for r in rows)),
            "rel_path_error_by_motion": {m: v for m in sorted({r["motion"] for r in rows})
                                         if (v := mean_of(found("rel_path_error", lambda r: r["motion"] == m))) is not None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--refs", type=int, default=20)
    ap.add_argument("--seeds", default="1", help="noise seeds, comma separated")
    ap.add_argument("--setups", default=None, help="comma-separated subset of the setups")
    ap.add_argument("--motions", default=None, help="only references of these kinds of motion, comma separated "
                                                     "(straight, arc, bounce, zigzag, pan)")
    ap.add_argument("--setups-file", type=Path, help="TOML: one [name] table of guide settings per setup")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-quality")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "quality.json")
    ap.add_argument("--save-videos", action="store_true", help="also write each video under --work/videos")
    args = ap.parse_args()

    import ditflow
    from ditflow.backbones import resolve_model
    from ditflow.eval import EvalSettings, Evaluator
    from ditflow.store import Store
    from ditflow.video import write_video

    setups = dict(SETUPS)
    if args.setups_file:
        import tomllib

        setups = tomllib.loads(args.setups_file.read_text())
        for name, spec in setups.items():  # [a.b] nests tables in TOML: its settings would be silently dropped
            nested = [k for k, v in spec.items() if isinstance(v, dict)]
            if nested:
                raise SystemExit(f"bench_quality: setup [{name}] holds a table [{name}.{nested[0]}]: quote names "
                                 f'with dots, e.g. ["{name}.{nested[0]}"]')
    if args.setups:
        setups = {k: setups[k] for k in args.setups.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    resolved = resolve_model(args.model)
    pre = resolved.preset
    i2v = resolved.adapter.needs_image  # each run animates a picture of its prompt's object (new_image)
    store = Store(args.work / "store")
    runtime = RuntimeOptions(quiet=True)
    evaluator = Evaluator(EvalSettings(metrics=("mf",), tracker="lk"))
    motions = tuple(args.motions.split(",")) if args.motions else None
    world = model_world(resolved.folder)
    try:
        refs = references(args.refs, pre.frames, pre.height, world, motions)
    except ValueError as e:
        raise SystemExit(f"bench_quality: {e}")

    rows: list[dict] = []
    static = []
    t_start = time.time()
    for seed, clip in refs:
        ref_dir = args.work / "refs" / f"seed{seed:04d}"
        if not ref_dir.exists():
            write_video(clip.frames, ref_dir, fmt="png")
        amfs: dict[tuple, object] = {}

        def amf_of(blocks) -> object:  # the reference's AMF from these blocks (None: the model's guidance blocks)
            key = tuple(blocks or ())
            if key not in amfs:
                amfs[key] = ditflow.extract(ref_dir, ExtractConfig(model=args.model, blocks=key or None),
                                            runtime=runtime, store=store)
            return amfs[key]

        amf = amf_of(None)
        static.append(judge.static_relative_error(clip.trajectories[0]))
        prompt = new_prompt(seed, clip, shapes=world.shapes)
        for noise_seed in seeds:
            made: dict[str, object] = {}
            for name, spec in setups.items():
                spec = dict(spec)
                t0, source, stored = time.time(), None, set(store.hashes())
                if "inject_from" in spec:
                    src = made.get(spec.pop("inject_from"))
                    if src is None:
                        continue
                    use_prompt = new_prompt(seed, clip, salt=1, shapes=world.shapes)
                    image = new_image(seed, clip, args.work / "images", 1, world.shapes) if i2v else None
                    gen = ditflow.inject(src.hash, ditflow.InjectConfig(prompt=use_prompt), image=image,
                                         runtime=runtime, store=store)
                else:
                    use_prompt = prompt
                    source = amf_of(spec.pop("blocks", None))
                    cfg = apply_overrides(GuideConfig(prompt=prompt, seed=noise_seed), spec)
                    image = new_image(seed, clip, args.work / "images", 0, world.shapes) if i2v else None
                    gen = ditflow.guide(source.hash, cfg, image=image, runtime=runtime, store=store)
                made[name] = gen
                seconds = time.time() - t0
                row = {"setup": name, "ref_seed": seed, "noise_seed": noise_seed, "motion": clip.motion,
                       "prompt": use_prompt, "seconds": seconds, "gen": gen.hash[:12],
                       "sample_seconds": gen.meta.get("seconds", {}).get("sample"),
                       "peak_mb": (gen.meta.get("peak_memory") or {}).get("mb"),  # what the run held above its model
                       "from_store": gen.hash in stored,
                       "amf": source.hash[:12] if source is not None else None,
                       **judge_video(gen.frames, use_prompt, clip, amf.frames, evaluator, world, gen.image)}
                rows.append(row)
                if args.save_videos:
                    out = args.work / "videos" / f"seed{seed:04d}-n{noise_seed}-{name.replace(' ', '_')}.mp4"
                    if not out.exists():
                        write_video(np.concatenate([amf.frames, gen.frames], axis=2), out)
                print(f"ref {seed:4d} seed {noise_seed} {name:18s} rel {row['rel_path_error']:6.2f} "
                      f"abs {row['abs_path_error']:6.2f} mf {row['mf'] if row['mf'] is None else round(row['mf'], 3)} "
                      f"match {row['prompt_match']} {seconds:5.1f}s", flush=True)

    summary = {name: summarise([r for r in rows if r["setup"] == name]) for name in setups}
    static_err = float(np.mean(static))
    result = {
        "benchmark": "quality", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "model": args.model, "refs": [s for s, _ in refs], "motions": motions, "noise_seeds": seeds, "units": f"pixels of a {pre.height}x{pre.width} frame",
        "static_rel_path_error": static_err, "setups": setups, "summary": summary,
        "seconds_total": time.time() - t_start, "rows": rows,
    }
    base = summary.get("backbone")
    if base and base["rel_path_error"]:
        for name, s in summary.items():  # the targets are for the DiTFlow rows; sweeps rank them all
            if name != "backbone" and s["rel_path_error"] is not None:
                s["targets"] = {
                    "rel_error_vs_backbone": s["rel_path_error"] / base["rel_path_error"],
                    "rel_error_vs_static": s["rel_path_error"] / static_err,
                    "mf_minus_backbone": (s["mf"] - base["mf"]) if s["mf"] is not None and base["mf"] is not None else None,
                }
    first = next(iter(summary.values()), None)
    for s in summary.values():  # speed-quality trade-offs (fast mode's sweep): each setup against the table's first
        s["vs_first"] = per_second(s, first)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out}")


def per_second(s: dict, base: dict | None) -> dict | None:
    """MF and path error of a setup per second of guided sampling, as ratios to `base`'s (> 1: more quality
    per second), with its MF and sampling time as ratios too. Path quality is 1 / relative path error."""
    keys = ("mf", "rel_path_error", "sample_seconds_per_video")
    if base is None or any(not s.get(k) or not base.get(k) for k in keys):
        return None
    speed = base["sample_seconds_per_video"] / s["sample_seconds_per_video"]
    return {"mf_per_second": s["mf"] / base["mf"] * speed,
            "path_per_second": base["rel_path_error"] / s["rel_path_error"] * speed,
            "mf": s["mf"] / base["mf"], "sample_seconds": 1 / speed}


def table(result: dict) -> str:
    def num(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    def ratio(v):
        return "" if not v else f"{v['mf_per_second']:.2f}, {v['path_per_second']:.2f}"

    i2v = any(s.get("frame0_error") is not None for s in result["summary"].values())  # a column for I2V runs
    lines = ["| setup | MF | rel. path error (px) | abs. path error (px) | object found | prompt match (colour) | "
             "background residue | " + ("frame-0 error vs image | " if i2v else "") + "s / video | s sampling | "
             "peak above model (MB) | × first: MF/s, path/s |", "|" + "---|" * (11 + i2v)]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {num(s['mf'], '{:.3f}')} | {num(s['rel_path_error'])} | {num(s['abs_path_error'])} | "
                     f"{100 * s['object_found']:.0f}% | {100 * s['prompt_match']:.0f}% ({100 * s['colour_match']:.0f}%) | "
                     f"{num(s['background_residue'], '{:.1f}')} | "
                     + (f"{num(s.get('frame0_error'), '{:.1f}')} | " if i2v else "")
                     + f"{num(s['seconds_per_video'], '{:.1f}')} | "
                     f"{num(s.get('sample_seconds_per_video'), '{:.1f}')} | {num(s.get('peak_mb'), '{:.0f}')} | "
                     f"{ratio(s.get('vs_first'))} |")
    lines.append(f"| (object that never moves) | | {result['static_rel_path_error']:.2f} |" + " |" * (8 + i2v))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
