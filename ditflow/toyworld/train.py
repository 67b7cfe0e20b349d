"""The toy model's recipe: a small CogVideoX (real diffusers classes) trained on the synthetic world.

Stage 1 trains the VAE (AutoencoderKLCogVideoX, temporal compression 4) to reconstruct clips; stage 2
freezes it and trains the transformer (v-prediction) together with a tiny T5; stage 3 sharpens the decoder
on the frozen encoder. Every stage checkpoints to a work folder (safetensors + JSON) and resumes from it, so
`make toy-model` survives interruptions; a work folder of another recipe is refused. Training seeds start
at 10,000; seeds below are held out for evaluation.

    python -m ditflow.toyworld.train --work out/toy-train --out assets/toy-cogvideox [--device cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import ArtifactNotFound, DitflowError
from ..progress import Progress
from . import checkpoints
from .data import TRAIN_SEED0, latent_bank, latent_scaling
from .model import adopt_model, build, export
from .recipes import RECIPES, Recipe
from .stages import finetune_decoder, train_text, train_transformer, train_vae

__all__ = ["RECIPES", "TRAIN_SEED0", "Recipe", "export_checkpoint", "main", "prepare", "train"]


def _first_stages(recipe: Recipe, work: Path, device: str, quiet: bool) -> tuple[tuple, Progress]:
    """Check (or claim) the work folder, then stages 1 and 1b: (parts, progress)."""
    checkpoints.claim(recipe, work)
    progress = Progress(quiet)
    parts = build(recipe)
    train_vae(recipe, parts[2], work, device, progress)
    if recipe.init_from:
        adopt_model(recipe, parts, work)
    train_text(recipe, parts[0], parts[1], work, device, progress)
    return parts, progress


def prepare(recipe: Recipe, work: Path, device: str = "cpu", quiet: bool = False, workers: int = 0) -> None:
    """Everything stage 2 starts from (VAE, text encoder, the encoded bank), e.g. to share one bank between
    recipes that differ only in the transformer: copy the work folder without its recipe.json."""
    parts, progress = _first_stages(recipe, work, device, quiet)
    latent_bank(recipe, parts[2], latent_scaling(recipe, parts[2], device), work, device, progress, workers)


def train(recipe: Recipe, work: Path, out: Path, device: str = "cpu", quiet: bool = False,
          deadline: float | None = None, workers: int = 0) -> Path:
    """The whole recipe into the pipeline folder `out`. `deadline` (time.time()) cuts stage 2's step count so it
    ends by then (the count trained is what the exported recipe.json records); `workers` render the bank."""
    parts, progress = _first_stages(recipe, work, device, quiet)
    scaling, steps = train_transformer(recipe, parts, work, device, progress, deadline, workers)
    recipe = replace(recipe, steps=steps)
    finetune_decoder(recipe, parts[2], work, device, progress)
    return export(recipe, parts, scaling, out)


def export_checkpoint(recipe: Recipe, work: Path, out: Path) -> Path:
    """Export whatever the work folder holds now (e.g. to try a model while stage 2 still runs)."""
    parts = build(recipe)
    checkpoints.load(work, "vae", parts[2])
    checkpoints.load(work, "decoder", parts[2])
    state = checkpoints.load(work, "transformer", parts[3])
    checkpoints.load_stage2_text(work, parts[1])  # as stage 2 would start or resume
    ema = checkpoints.load_weights(work, "transformer_ema")
    if ema is not None:
        parts[3].load_state_dict(ema)
    if "scaling" not in state:
        raise ArtifactNotFound(f"no transformer checkpoint in {work} yet")
    if "planned" in state:  # a run cut to a deadline (--budget): its recipe is the count it planned
        recipe = replace(recipe, steps=state["planned"])
    return export(recipe, parts, state["scaling"], out)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("out/toy-train"), help="checkpoints (resumed if present)")
    ap.add_argument("--out", type=Path, default=Path("assets/toy-cogvideox"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="v9",
                    help="named recipe: v9 (the shipped model: v8 trained further from out/toy-v8, bf16; minutes on "
                         "a GPU), v8 (larger coarse shapes, shape-weighted loss, v4's VAE from out/toy-v4-vae, batches "
                         "of 256; minutes on a GPU, about 20 hours on 2 CPU cores; v9 starts from it), v4 (the CPU "
                         "recipe: about 70 min on 2 cores)")
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int, help="stage 2 batch size")
    ap.add_argument("--bank", type=int, help="training clips encoded once for stage 2")
    ap.add_argument("--decoder-steps", type=int)
    ap.add_argument("--text-steps", type=int, help="stage 1b steps (T5 role pretraining; 0 = off)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="run only stage 3 (after stage 1), e.g. beside a running stage 2: it needs only the encoder")
    ap.add_argument("--export-only", action="store_true",
                    help="export the latest checkpoints (EMA transformer, fine-tuned decoder if any) without training")
    ap.add_argument("--budget", type=float, metavar="SECONDS",
                    help="wall-clock seconds for this run: stage 2's step count is cut (after timing its first "
                         "steps) so it ends in time; the count trained is recorded in the exported recipe.json")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes that render the training clips of the latent bank (0: this one)")
    ap.add_argument("--prepare-only", action="store_true",
                    help="stop before stage 2, once the VAE, text encoder and latent bank are in --work")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in (("vae_steps", args.vae_steps), ("steps", args.steps),
                                   ("decoder_steps", args.decoder_steps), ("text_steps", args.text_steps),
                                   ("batch", args.batch), ("bank", args.bank))
                 if v is not None}
    recipe = replace(RECIPES[args.recipe], **overrides)
    if args.export_only:
        print(export_checkpoint(recipe, args.work, args.out))
        return
    if args.prepare_only:
        prepare(recipe, args.work, args.device, args.quiet, args.workers)
        print(args.work)
        return
    if args.decoder_only:
        vae = build(recipe)[2]
        checkpoints.load(args.work, "vae", vae)
        finetune_decoder(recipe, vae, args.work, args.device, Progress(args.quiet))
        return
    deadline = time.time() + args.budget if args.budget else None
    if args.device.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # TF32 matrix products: the GPU recipes' speed, not their sums
    print(train(recipe, args.work, args.out, args.device, args.quiet, deadline, args.workers))


if __name__ == "__main__":
    try:
        main()
    except DitflowError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
