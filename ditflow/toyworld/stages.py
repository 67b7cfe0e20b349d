"""The training stages, each resumable from its checkpoint in the work folder (`loop.run`):

1. train_vae: the VAE reconstructs clips, 3 latent channels pulled toward the downsampled frames;
1b. train_text: the T5 learns the prompt's parse on every output token;
2. train_transformer: the transformer (v-prediction) with the T5 on the frozen VAE's latent bank;
3. finetune_decoder: the decoder sharpened on the frozen encoder.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..progress import Progress
from . import checkpoints
from .data import clip_batch, latent_bank, latent_rgb, latent_scaling, world_seed
from .diffusion import draw_batch, ema_step, lr_factor, noised, rope, token_table
from .loop import StepPlan, optimise, run
from .model import adopt_vae
from .recipes import Recipe
from .world import BACKGROUNDS, COLOURS, SHAPES, scene_prompt


def train_vae(recipe: Recipe, vae, work: Path, device: str, progress: Progress) -> None:
    """Stage 1 (or `recipe.vae_from`'s VAE copied in its place). L1 reconstruction + a KL term + an L1 pulling
    3 latent channels toward the frames at latent resolution (`Recipe.latent_rgb_weight`)."""
    if recipe.vae_from:
        adopt_vae(recipe, vae, work)
    state = checkpoints.load(work, "vae", vae)
    vae.to(device).train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr)  # moments restart on resume: cheap to re-warm

    def step(s: int) -> torch.Tensor:
        video, _ = clip_batch(recipe, s, recipe.vae_batch, stage=1)
        video = video.to(device)
        dist = vae.encode(video).latent_dist
        recon = vae.decode(dist.sample()).sample  # draws from torch's global generator, seeded by build()
        loss = (recon - video).abs().mean() + recipe.kl_weight * dist.kl().mean()
        if recipe.latent_rgb_weight:
            rgb = latent_rgb(video, recipe.size // dist.mean.shape[-1])
            loss = loss + recipe.latent_rgb_weight * (dist.mean[:, :3] - rgb).abs().mean()
        optimise(opt, loss)
        return loss

    run(progress, "train VAE", state["step"], StepPlan(recipe.vae_steps), recipe.checkpoint_every, step,
        lambda s, loss: checkpoints.save(work, "vae", vae, {"step": s + 1, "loss": loss.item()}))
    vae.eval().requires_grad_(False)


def finetune_decoder(recipe: Recipe, vae, work: Path, device: str, progress: Progress) -> None:
    """Stage 3: the decoder alone on the frozen encoder's mean latents: the latent space the transformer
    learnt is unchanged, while the frames it decodes to get sharper. L1 plus an L1 on spatial gradients
    (edges are what a blurry decoder loses first)."""
    state = checkpoints.load(work, "decoder", vae)
    vae.to(device).eval().requires_grad_(False)
    vae.decoder.train().requires_grad_(True)
    if vae.post_quant_conv is not None:
        vae.post_quant_conv.requires_grad_(True)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=recipe.decoder_lr)

    def step(s: int) -> torch.Tensor:
        video, _ = clip_batch(recipe, s, recipe.vae_batch, stage=4)
        video = video.to(device)
        with torch.no_grad():
            z = vae.encode(video).latent_dist.mode()
        recon = vae.decode(z).sample
        loss = (recon - video).abs().mean()
        for dim in (-1, -2):
            loss = loss + (recon.diff(dim=dim) - video.diff(dim=dim)).abs().mean()
        optimise(opt, loss)
        return loss

    run(progress, "fine-tune VAE decoder", state["step"], StepPlan(recipe.decoder_steps), recipe.checkpoint_every,
        step, lambda s, loss: checkpoints.save(work, "decoder", vae, {"step": s + 1, "loss": loss.item()}))
    vae.eval().requires_grad_(False)


def parse_labels(prompts: list[str], shapes: tuple[str, ...] = SHAPES) -> torch.Tensor:
    """[B, 6] class indices: first object's colour and shape (of the world's `shapes`), second object's colour
    and shape (last class: none), background colour and kind."""
    from .judge import parse_prompt

    colours, kinds = list(COLOURS), list(BACKGROUNDS)
    rows = []
    for prompt in prompts:
        p = parse_prompt(prompt)
        (c1, s1), (c2, s2) = p.objects[0], (p.objects + [(None, None)])[1]
        rows.append([colours.index(c1), shapes.index(s1), colours.index(c2) if c2 else len(colours),
                     shapes.index(s2) if s2 else len(shapes), colours.index(p.bg_colour), kinds.index(p.background)])
    return torch.tensor(rows)


def train_text(recipe: Recipe, tokenizer, text_encoder, work: Path, device: str, progress: Progress) -> None:
    """Stage 1b: linear probes on *every* output token (pads included: the transformer attends to them all)
    must recover the prompt's parse, so each token carries colour-to-role bindings the transformer can read.
    Prompts are drawn from the world's generator (training seeds)."""
    state = checkpoints.load(work, "text_pretrain", text_encoder)
    if state["step"] >= recipe.text_steps:
        return  # before the probes' seeding below: a finished (or adopted) stage leaves torch's generator alone
    n_shapes = len(recipe.shapes)
    sizes = (len(COLOURS), n_shapes, len(COLOURS) + 1, n_shapes + 1, len(COLOURS), len(BACKGROUNDS))
    torch.manual_seed(recipe.seed + 7)
    heads = torch.nn.ModuleList(torch.nn.Linear(text_encoder.config.d_model, n) for n in sizes).to(device)
    text_encoder.to(device).train().requires_grad_(True)
    opt = torch.optim.AdamW(list(text_encoder.parameters()) + list(heads.parameters()), lr=recipe.text_lr)
    last = {}  # the latest step's probe outputs, for the checkpoint's accuracy

    def step(s: int) -> torch.Tensor:
        prompts = [scene_prompt(world_seed(5, s, recipe.text_batch, i), shapes=recipe.shapes)
                   for i in range(recipe.text_batch)]
        labels = parse_labels(prompts, recipe.shapes).to(device)
        ids = tokenizer(prompts, padding="max_length", max_length=recipe.text_len, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        out = text_encoder(ids)[0]  # [B, L, D]
        logits = [h(out) for h in heads]  # each [B, L, n]
        loss = sum(torch.nn.functional.cross_entropy(lg.flatten(0, 1), labels[:, k].repeat_interleave(out.shape[1]))
                   for k, lg in enumerate(logits)) / len(heads)
        optimise(opt, loss)
        last.update(logits=logits, labels=labels)
        return loss

    def checkpoint(s: int, loss: torch.Tensor) -> None:
        acc = min(float((lg.argmax(-1) == last["labels"][:, k, None]).float().mean())
                  for k, lg in enumerate(last["logits"]))
        checkpoints.save(work, "text_pretrain", text_encoder, {"step": s + 1, "loss": loss.item(), "worst_accuracy": acc})

    run(progress, "train text encoder", state["step"], StepPlan(recipe.text_steps), recipe.checkpoint_every, step,
        checkpoint)
    text_encoder.eval().requires_grad_(False)


def train_transformer(recipe: Recipe, parts: tuple, work: Path, device: str, progress: Progress,
                      deadline: float | None = None, workers: int = 0) -> tuple[float, int]:
    """Stage 2; returns (latent scaling, steps trained). With a `deadline` (time.time()), the step count is
    cut so the stage ends by then (`loop.StepPlan`); the cosine follows the cut count."""
    tokenizer, text_encoder, vae, transformer, scheduler = parts
    vae.to(device)
    text_encoder.to(device).eval().requires_grad_(False)
    state = checkpoints.load(work, "transformer", transformer)
    checkpoints.load_stage2_text(work, text_encoder)
    transformer.to(device)
    ema = checkpoints.load_weights(work, "transformer_ema", device)
    if ema is None:
        ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    scaling = state["scaling"] if "scaling" in state else latent_scaling(recipe, vae, device)
    bank, bank_prompts, masks, ambiguity = latent_bank(recipe, vae, scaling, work, device, progress, workers)
    if device != "cpu":  # the whole bank fits an accelerator: no host-to-device copy per step
        bank, masks = bank.to(device), masks.to(device)
        ambiguity = ambiguity.to(device) if ambiguity is not None else None
    id_table, prompt_row, empty_row = token_table(tokenizer, bank_prompts, recipe.text_len, device)
    transformer.train().requires_grad_(True)
    text_params = list(text_encoder.parameters())
    clipped = list(transformer.parameters()) + text_params
    opt = torch.optim.AdamW([{"params": transformer.parameters()}, {"params": text_params}], lr=recipe.lr, weight_decay=0.01)
    plan, first = StepPlan(recipe.steps, deadline), state["step"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s + first, plan.total, recipe.warmup))
    alphas = scheduler.alphas_cumprod.to(device, torch.float32)
    tables = rope(recipe, transformer, device)
    gen = torch.Generator().manual_seed(recipe.seed + first)  # seeded per resumed step: a resume redraws nothing
    noise_gen = torch.Generator(device).manual_seed(recipe.seed + 3_000_000 + first) if recipe.device_noise else None
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=recipe.amp)

    def step(s: int) -> torch.Tensor:
        idx, empty, t, noise = draw_batch(recipe, gen, len(bank), bank.shape[1:], noise_gen)
        x0, t, noise = bank[idx].to(device), t.to(device), noise.to(device)
        train_text = s >= recipe.text_from
        text_encoder.train(train_text).requires_grad_(train_text)
        ids = id_table[torch.where(empty, empty_row, prompt_row[idx]).to(device)]
        with torch.set_grad_enabled(train_text):
            text = text_encoder(ids)[0]
        xt, target = noised(alphas, x0, noise, t)
        with autocast:
            pred = transformer(hidden_states=xt, encoder_hidden_states=text, timestep=t, image_rotary_emb=tables,
                               return_dict=False)[0].float()
        object_weight = recipe.object_weight if s >= recipe.object_weight_from else 0.0
        weight = 1.0 + object_weight * masks[idx].to(device)  # [B, F, 1, h, w]
        if ambiguity is not None:
            weight = weight + recipe.shape_weight * ambiguity[idx].to(device)
        loss = (weight * (pred - target) ** 2).mean() / weight.mean()
        optimise(opt, loss, clipped)
        sched.step()
        ema_step(ema, transformer, 0.0 if s <= recipe.ema_start else recipe.ema)  # 0: copy the live weights
        return loss

    def checkpoint(s: int, loss: torch.Tensor) -> None:
        progress.log(f"stage 2 step {s + 1}/{plan.total} loss {loss.item():.4f}")
        checkpoints.save_weights(work, "transformer_ema", ema)
        checkpoints.save(work, "text_encoder", text_encoder, {"step": s + 1})
        checkpoints.save(work, "transformer", transformer, {"step": s + 1, "loss": loss.item(), "scaling": scaling,
                                                             "planned": plan.total})

    total = run(progress, "train transformer", first, plan, recipe.checkpoint_every, step, checkpoint,
                show=lambda s: device == "cpu" or s % 25 == 0)
    transformer.load_state_dict(ema)
    text_encoder.eval().requires_grad_(False)
    transformer.eval().requires_grad_(False)
    return scaling, total
