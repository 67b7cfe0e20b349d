"""Benchmark: memory and time of a whole guided run at the real models' sizes, random weights.

    python benchmarks/bench_scale.py            # the real shapes (a GPU): 2b, 5b, wan-1.3b, wan-14b at 24/49 (Wan 25/49/81)
                                                # frames; 1.5-5b at 81 (768x1360), wan2.2-a14b at 81, wan2.2-ti2v-5b
                                                # at 121 (704x1280)
(Wan takes 4k+1 frames: 25 stands for 24; --quick runs each model's first frame count.)
    python benchmarks/bench_scale.py --simulate # no GPU, no weights: every model x variant simulated (bench_plan.py)
    python benchmarks/bench_scale.py --quick    # 2 CPU cores, < 12 min: 2 blocks (per expert) at the real width, 32x48
                                                # pixels (32x64 on TI2V-5B's 16x VAE), 2 steps

Each model's transformer is built from its published config (the values below, from the checkpoints'
transformer/config.json) with random weights: time and memory do not depend on weight values, and nothing is
downloaded. The VAE is the family's default (the released one's architecture); the text encoder is a 1-layer
T5/UMT5 of the real width (the real T5-XXL/UMT5-XXL weigh 9.5/11 GB in bf16: add them when reading the
GPU rows for a run without --cpu-offload). The folders are written once under --work.

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

COGVIDEOX = dict(attention_head_dim=64, in_channels=16, out_channels=16, text_embed_dim=4096, time_embed_dim=512,
                 sample_height=60, sample_width=90, sample_frames=49, patch_size=2, max_text_seq_length=226,
                 temporal_compression_ratio=4, activation_fn="gelu-approximate", norm_eps=1e-5, attention_bias=True,
                 flip_sin_to_cos=True, freq_shift=0, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0)
WAN = dict(patch_size=(1, 2, 2), attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
           cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
# model (a preset name) -> (how to build it: cogvideox, wan or a Wan 2.2 variant, transformer config, pixel size, frames)
MODELS = {
    "2b": ("cogvideox", dict(COGVIDEOX, num_attention_heads=30, num_layers=30, use_rotary_positional_embeddings=False), (480, 720), (24, 49)),
    "5b": ("cogvideox", dict(COGVIDEOX, num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True), (480, 720), (24, 49)),
    # CogVideoX 1.5: tokens of 2 latent frames, no patch bias, RoPE on the slice grid (its config as recalled, not
    # read from the release: sample 300x300, 81 frames, 224 text tokens), at its card's 81 frames of 768x1360
    "1.5-5b": ("cogvideox", dict(COGVIDEOX, num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True,
                                 patch_size_t=2, patch_bias=False, sample_height=300, sample_width=300, sample_frames=81,
                                 max_text_seq_length=224), (768, 1360), (81,)),
    "wan-1.3b": ("wan", dict(WAN, num_attention_heads=12, ffn_dim=8960, num_layers=30), (480, 832), (25, 49, 81)),
    "wan-14b": ("wan", dict(WAN, num_attention_heads=40, ffn_dim=13824, num_layers=40), (480, 832), (25, 49, 81)),
    # Wan 2.2: two 14B experts (the same config each; boundary 0.875, shift 12 as the official T2V-A14B config), and
    # TI2V-5B: 48 latent channels on a 16x VAE, at its card's 121 frames of 704x1280 (27,280 video tokens)
    "wan2.2-a14b": ("wan2.2-a14b", dict(WAN, num_attention_heads=40, ffn_dim=13824, num_layers=40), (480, 832), (81,)),
    "wan2.2-ti2v-5b": ("wan2.2-ti2v-5b", dict(WAN, num_attention_heads=24, ffn_dim=14336, num_layers=30, in_channels=48,
                                              out_channels=48), (704, 1280), (121,)),
}
QUICK_SIZE = {"wan2.2-ti2v-5b": (32, 64)}  # its 16x VAE and patch 2 take multiples of 32
VARIANTS = ("default", "fast", "offload", "paper", "unguided", "flowmotion", "ropecraft", "fastvmt")
METHOD_VARIANTS = ("flowmotion", "ropecraft", "fastvmt")  # --method NAME with its published defaults
# one guided step of 3 Adam steps (the paper: 10 of 5), at 6 (24/25 frames) or 13 (49) latent frames of 2x3 patches
QUICK = dict(blocks=2, size=(32, 48), steps=2, guidance_range=(2, 1), opt_steps=3)


# ------------------------------------------------------------------------------------------- the models
def build_folder(name: str, folder: Path, quick: bool) -> Path:
    """The model's pipeline with random weights (its real transformer config; 2 blocks with --quick)."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch

    from ditflow.backbones import PRESETS
    from ditflow.tiny import build_tokenizer

    family, config, size, _ = MODELS[name]
    pre = PRESETS[name]
    layers = QUICK["blocks"] if quick else config["num_layers"]
    blocks = [0] if quick else list(pre.guidance_blocks)
    dtype = torch.float32 if quick else getattr(torch, pre.dtype)
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    if family == "cogvideox":
        from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline,
                               CogVideoXTransformer3DModel)
        from transformers import T5Config, T5EncoderModel

        text = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=2,
                                       decoder_start_token_id=0, pad_token_id=0))
        sched_cls = CogVideoXDPMScheduler if pre.family.get("scheduler") == "dpm" else CogVideoXDDIMScheduler
        sched = sched_cls(timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True,
                          snr_shift_scale=3.0 if name == "2b" else 1.0, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, clip_sample=False, set_alpha_to_one=True)
        pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text, vae=AutoencoderKLCogVideoX(),
                                 transformer=CogVideoXTransformer3DModel(**{**config, "num_layers": layers}), scheduler=sched)
    else:
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        text = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=256, num_layers=1,
                                           num_heads=2, decoder_start_token_id=0, pad_token_id=0))
        shift = {"wan2.2-a14b": 12.0, "wan2.2-ti2v-5b": 5.0}.get(family, 3.0)
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                        num_train_timesteps=1000)
        extra = {}
        if family == "wan2.2-a14b":
            extra = dict(transformer_2=WanTransformer3DModel(**{**config, "num_layers": layers}), boundary_ratio=0.875)
        vae = AutoencoderKLWan()
        if family == "wan2.2-ti2v-5b":  # the Wan 2.2 VAE: residual, patchifies 2x2 inside
            vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
                                   out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                                   latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
            extra = dict(expand_timesteps=True)
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae,
                           transformer=WanTransformer3DModel(**{**config, "num_layers": layers}), scheduler=sched, **extra)
    pipe.to(dtype)
    pipe.save_pretrained(folder)
    height, width = QUICK_SIZE.get(name, QUICK["size"]) if quick else size
    settings = {"guidance_blocks": blocks, "height": height, "width": width, "dtype": str(dtype).split(".")[-1],
                **pre.family, "cfg": pre.cfg,
                "negative_prompt": pre.negative_prompt, "steps": pre.steps, "guidance_range": list(pre.guidance_range),
                "lr": {k: list(v) for k, v in pre.lr.items()}, "opt_mode": "latent"}
    (folder / "ditflow.json").write_text(json.dumps(settings, indent=1))
    return folder


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
    ap.add_argument("--models", default=",".join(MODELS))
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
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"bench_scale: unknown model {name!r} (known: {', '.join(MODELS)})")
        folder = build_folder(name, args.work / mode / "models" / name, args.quick)
        height, width = QUICK_SIZE.get(name, QUICK["size"]) if args.quick else MODELS[name][2]
        frame_counts = [int(f) for f in args.frames.split(",")] if args.frames else MODELS[name][3][:1 if args.quick else 3]
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
