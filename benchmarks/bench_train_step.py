"""Where a toy recipe's stage-2 step spends its time: the step as `train_transformer` runs it (noise and
indices from the CPU's seeded generator, the loss read every step) against variants, on a synthetic latent
bank, so it needs no training clips. Prints milliseconds per step and clips per second; the first row is the
baseline of the same run. README "What v8 showed" quotes it from an H200.

    python benchmarks/bench_train_step.py --device cuda --recipe v8 --steps 30
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from ditflow.toyworld.diffusion import draw_batch, ema_step, noised, rope
from ditflow.toyworld.model import build
from ditflow.toyworld.recipes import RECIPES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="v8")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant (after 3 untimed)")
    ap.add_argument("--scale", type=float, default=1.0, help="batch multiplier (e.g. 1/32 for a quick CPU check)")
    args = ap.parse_args()
    dev, recipe = args.device, RECIPES[args.recipe]
    if dev.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # as train.py does on a GPU
    _, text_encoder, _, transformer, scheduler = build(recipe)
    transformer.to(dev).train()
    text_encoder.to(dev).train()
    tables, alphas = rope(recipe, transformer, dev), scheduler.alphas_cumprod.to(dev, torch.float32)
    n, side, frames = 4096, recipe.latent_size, (recipe.frames - 1) // 4 + 1
    bank = torch.randn(n, frames, recipe.latent_channels, side, side, device=dev)
    masks = torch.rand(n, frames, 1, side, side, device=dev)
    ids = torch.randint(0, text_encoder.config.vocab_size, (64, recipe.text_len), device=dev)
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}

    def step(batch: int, gpu_rng: bool, optimise: bool, read_loss: bool) -> None:
        if gpu_rng:
            idx = torch.randint(n, (batch,), device=dev)
            t, rows = torch.randint(0, 1000, (batch,), device=dev), torch.randint(0, 64, (batch,), device=dev)
            noise = torch.randn((batch,) + bank.shape[1:], device=dev)
        else:  # train_transformer's way (its draw_batch): reproducible on any device
            idx, empty, t, noise = draw_batch(replace(recipe, batch=batch), torch.Generator().manual_seed(0), n,
                                              bank.shape[1:])
            rows = torch.where(empty, 0, idx % 64).to(dev)
            idx, t, noise = idx.to(dev), t.to(dev), noise.to(dev)
        xt, target = noised(alphas, bank[idx], noise, t)
        pred = transformer(hidden_states=xt, encoder_hidden_states=text_encoder(ids[rows])[0], timestep=t,
                           image_rotary_emb=tables, return_dict=False)[0]
        loss = ((1 + masks[idx]) * (pred - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimise:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_step(ema, transformer, recipe.ema)
        if read_loss:
            loss.item()

    def sync() -> None:
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    b = max(1, int(recipe.batch * args.scale))
    for name, batch, gpu_rng, optimise, read_loss in [
            ("as trained", b, False, True, True), ("loss not read", b, False, True, False),
            ("noise on the device", b, True, True, False), ("forward + backward only", b, True, False, False),
            ("noise on the device, 2x batch", 2 * b, True, True, False),
            ("noise on the device, batch / 4", max(1, b // 4), True, True, False)]:
        for _ in range(3):
            step(batch, gpu_rng, optimise, read_loss)
        sync()
        start = time.time()
        for _ in range(args.steps):
            step(batch, gpu_rng, optimise, read_loss)
        sync()
        ms = (time.time() - start) / args.steps * 1000
        print(f"{name:32s} batch {batch:4d}: {ms:7.1f} ms/step {batch / ms * 1000:8.0f} clips/s", flush=True)
    if dev.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
