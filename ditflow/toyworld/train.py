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
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..progress import Progress
from ..tiny import build_tokenizer
from .world import (BACKGROUNDS, BG_COLOURS, CLASSIC_WORLD, COARSE_SHAPES, COLOURS, MOTIONS, OBJECT_RADIUS, SHAPES, Clip, World,
                    make_clip, scene_prompt, shape_ambiguity)

TRAIN_SEED0 = 10_000


@dataclass(frozen=True)
class Recipe:
    size: int = 64  # pixels; the VAE divides by 4 -> 16x16 latent -> 8x8 patches of 2x2. v5's recipe (not shipped)
    # drew 96 px with vae_channels (8, 16, 32), patch 3 and 5,000 steps: a 24x24 latent whose VAE kept shapes
    # (88% against 65%), but the transformer still drew circles, and guidance moved them less well (README)
    object_radius: tuple[float, float] = OBJECT_RADIUS  # the world's object sizes (v3: 0.10-0.18, too small to
    # keep their shape through the VAE; v6: 0.20-0.28)
    shapes: tuple[str, ...] = SHAPES  # the world's shape set (v7: COARSE_SHAPES, which differ at the token grid)
    vae_from: str | None = None  # a toy pipeline folder whose VAE (decoder fine-tune included) replaces stages 1
    # and 3: the VAE only reconstructs pixels, so a world of other shapes can reuse it (v7 takes v4's)
    frames: int = 17  # -> 5 latent frames
    vae_channels: tuple[int, ...] = (16, 32, 32)  # 3 levels: spatial 4, temporal 4
    latent_channels: int = 4  # v2's 8 (3 anchored + 5 free) gave the transformer free channels of fine texture
    # it could not model: samples were patch-grid noise. 3 anchored + 1 free stays close to the pixel latent
    # that a quick experiment showed a model this small can learn.
    patch: int = 2  # transformer patch side in latent pixels: 8x8 tokens per latent frame
    heads: int = 4
    head_dim: int = 32
    layers: int = 8
    text_len: int = 16
    vae_steps: int = 1200
    vae_batch: int = 4
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    latent_rgb_weight: float = 1.0  # pull 3 latent channels toward the downsampled frames: a smooth, pixel-like
    # latent space is far easier for a small transformer to model (v1 without it drew smeared colour fields)
    decoder_steps: int = 600  # stage 3: the decoder alone on the frozen encoder's latents (sharper frames)
    decoder_lr: float = 5e-4
    steps: int = 4500
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 0  # linear learning-rate warm-up steps before the cosine (v8's large batches need it)
    ema: float = 0.999
    ema_start: int = 1000  # EMA restarts from the live weights here: earlier it would still hold the random init
    empty_prompt: float = 0.1  # for classifier-free guidance
    high_noise_power: float = 0.8  # t = 999 * u**power: < 1 puts more weight on high-noise timesteps
    object_weight: float = 2.0  # extra loss weight on object tokens: small objects vanish under a plain MSE
    shape_weight: float = 0.0  # extra loss weight where the world's shapes disagree (world.shape_ambiguity; v6: 2):
    # v4 ignored the shape word, whose pixels are a few percent of an object's loss
    object_weight_from: int = 0  # the step it starts (v1 switched it on at 2,500, when it found the need)
    text_from: int = 0  # the T5 trains with the transformer from here: frozen random, it gives a bag of words
    # (the transformer has no text positions), so "a blue square on a grey background" cannot tell object
    # colour from background colour
    text_steps: int = 3000  # stage 1b (off in v3): every T5 output token learns the whole parse (which colour is
    # the object's, which the background's). Trained only through the transformer, the T5 stayed a bag of words:
    # samples painted the background in the object's colour (v2, v3)
    text_batch: int = 64
    text_lr: float = 1e-3
    # Stage 2b (off before v6): a shape-discriminative fine-tune of the stage-2 transformer. v4 ignored the shape
    # word (its v-prediction error on objects was the same with a wrong shape in the prompt) and drew the average
    # shape, a circle; colour it read. Each step also scores a foil prompt (the first object's shape swapped) and
    # a hinge asks the true prompt to fit the object better than the foil by `tune_margin` (log ratio); object
    # edges (partly covered latent pixels), where shapes differ, weigh `tune_edge_weight` more.
    tune_steps: int = 0
    tune_lr: float = 1e-4
    tune_t: tuple[int, int] = (50, 700)  # timesteps where shape forms (a re-noising test: layout is fixed above)
    tune_edge_weight: float = 4.0
    tune_contrast: float = 1.0  # 0: no foil, a plain fine-tune on the tune_t band of timesteps
    tune_margin: float = 0.1
    tune_region: str = "object"  # "shapes": the hinge and the edge weight act on the pixels any of the world's
    # shapes would cover (the bank's ambiguity masks with the object's), not on the object's own
    bank: int = 8_000  # clips encoded once and reused across epochs: the VAE pass would cost ~half of each step
    init_from: str | None = None  # a toy pipeline folder whose transformer and text encoder start stage 2 (stage
    # 1b is skipped): training a shipped model further without its work folder. Its VAE must be the recipe's
    # (vae_from the same folder), since the transformer learnt that VAE's latents at that scaling
    amp: bool = False  # stage 2's forward pass under bf16 autocast (weights, optimiser and loss stay fp32): GPU speed
    device_noise: bool = False  # stage 2 draws its noise on the training device (its own generator, seeded per
    # run and step) instead of copying CPU noise there: 15% of a GPU step at batch 256 (bench_train_step.py)
    checkpoint_every: int = 100
    seed: int = 0
    defaults: dict = field(default_factory=lambda: {
        "guidance_blocks": [7], "frames": 17, "height": 64, "width": 64, "steps": 50, "cfg": 2.5,
        "scheduler": "ddim", "dynamic_cfg": False, "dtype": "float32", "negative_prompt": "",
        # v4's sweeps (benchmarks/sweeps/toy.toml; 8 references x 3 seeds for the range): latent mode over
        # steps 35 -> 15 (t ~ 700 -> 300, where make probe-amf finds motion in the last blocks' AMF),
        # confidence-weighted AMF loss; emb mode keeps angles and carries them. lr 0.015 -> 0.005
        # (toy-v4-optimizer.toml, 20 references x 3 seeds): 9.75 px against 12.93 with 0.03 -> 0.01. emb mode
        # takes 0.08 -> 0.03 (toy-v4-clean.toml, toy-v4-emb.toml): 11.90 px against 12.80 at 0.05 -> 0.02 and
        # 14.58 at 0.03 -> 0.01, and stronger embeddings replay better (emb-lr-toy-v4.json). Mutual weighting:
        # 9.49 px against confidence's 9.75, better in 28 videos of 60 and worse in 14 (toy-v4-clean.toml)
        "guidance_range": [35, 15], "lr": [0.015, 0.005], "emb_lr": [0.08, 0.03], "opt_mode": "latent",
        "emb_param": "angle", "emb_after": "carry", "loss_weighting": "mutual", "injection": False,
    })

    @property
    def spatial(self) -> int:
        """The VAE's spatial factor: one downsampling per level but the last."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.size // self.spatial

    def __post_init__(self):
        unit = self.spatial * self.patch
        if self.size % unit:
            raise ValueError(f"size {self.size} must be a multiple of {unit} (VAE factor x patch {self.patch})")
        if self.tune_region not in ("object", "shapes"):
            raise ValueError(f"tune_region must be 'object' or 'shapes', not {self.tune_region!r}")
        if (self.frames - 1) % 4:
            raise ValueError(f"frames {self.frames} must be 4k + 1 (temporal compression 4)")


# Named recipes (`--recipe`): Recipe() is v4's, the CPU recipe (shipped until v8). v6 draws larger objects, whose shapes the VAE
# keeps (92% after stage 1 against v4's 65%), weighs the pixels where shapes disagree, and trains 4,000 steps (a
# session's budget on a machine at half v4's speed); trained and measured, not shipped (README).
RECIPES: dict[str, Recipe] = {
    "v4": Recipe(),
    "v6": Recipe(object_radius=(0.20, 0.28), shape_weight=2.0, steps=4000),
    "v7": Recipe(object_radius=(0.18, 0.26), shapes=COARSE_SHAPES, shape_weight=2.0, vae_from="assets/toy-cogvideox"),
}
# v7 then stage 2b over the shape region at the noise levels where v7 reads the shape word (README)
RECIPES["v7b"] = replace(RECIPES["v7"], tune_steps=600, tune_t=(700, 900), tune_region="shapes")
# GPU recipes: v7's world and loss, 16x larger batches drawn from an 8x larger bank (64,000 clips), warm-up.
# Trained side by side on one H200 for 7 min each (--budget cut them to the step counts below, which reproduce
# them without it); v8 shipped until v9. About 31 s per step on 2 CPU cores: some 20 hours there. v8-deep has 12 blocks.
# v8's guidance defaults (benchmarks/sweeps/toy-v8-soft.toml, 10 references x noise seeds 2 and 3): v4's, but the AMF
# loss aims at the reference's soft AMF and spans blocks 6 and 7, with KV injection at block 0: 8.53 px against
# 11.99, better in 17 of 20 videos, MF 0.605 against 0.513
V8_DEFAULTS = {**Recipe().defaults, "guidance_blocks": [6, 7], "reference_flow": "soft", "injection": True}
RECIPES["v8"] = replace(RECIPES["v7"], batch=256, lr=6e-4, warmup=300, bank=64_000, steps=2253, checkpoint_every=500,
                        defaults=V8_DEFAULTS)
RECIPES["v8-deep"] = replace(RECIPES["v8"], layers=12, steps=1617, defaults=Recipe().defaults)  # as it was exported
# v8b (measured on CPU, not shipped): stage 2b on v8's weights, the foil hinge over the shape region at t = 700-999,
# 400 steps of batch 32 from a bank of 4,000 clips (25 min on 2 cores): samples unchanged (README)
RECIPES["v8b"] = replace(RECIPES["v8"], init_from="out/toy-v8", vae_from="out/toy-v8", steps=0, bank=4000, batch=32,
                         tune_steps=400, tune_t=(700, 999), tune_region="shapes", checkpoint_every=50)
# Measured on CPU, not shipped (README): v8b-low aims v8b's hinge at low noise (t = 20-600, where a re-noised true
# triangle is already rounded off: probe_renoise.py); v8c is a plain fit (no foil) on the timesteps where samples
# settle their shape (t = 400-950: decoded x0 predictions keep their outline from about t = 600), v8b's bank
RECIPES["v8b-low"] = replace(RECIPES["v8b"], tune_t=(20, 600), tune_lr=2e-4)
RECIPES["v8c"] = replace(RECIPES["v8b"], tune_steps=1500, tune_t=(400, 950), tune_contrast=0.0, checkpoint_every=250)
# v9's guidance defaults: v8's, but emb mode at half the rate and with the model's RoPE tables restored after the
# range (benchmarks/sweeps/toy-v9-emb*.toml, 10 references x noise seeds 2 and 3): prompt match 95% against 30%,
# path error 9.68 px against 9.45
V9_DEFAULTS = {**V8_DEFAULTS, "emb_lr": [0.04, 0.015], "emb_after": "restore"}
# v9 (ships): v8 trained further from its weights (out/toy-v8: `--recipe v8 --out out/toy-v8`, or a copy of the v8
# that ships), a fresh warm-up to half v8's peak rate, the EMA from the start, a bank twice v8's (its first 64,000
# clips are v8's), bf16 autocast and noise drawn on the GPU. Trained on one H200 in one call (`--budget 508`: the
# bank took 2 min, then 4,743 steps 5 min 20 s, 67 ms each); the step count below reproduces it without --budget
RECIPES["v9"] = replace(RECIPES["v8"], init_from="out/toy-v8", vae_from="out/toy-v8", lr=3e-4, warmup=100, ema_start=0,
                        bank=128_000, steps=4743, amp=True, device_noise=True, defaults=V9_DEFAULTS)


def vocabulary(shapes: tuple[str, ...] = SHAPES) -> list[str]:
    extra = "a an and on background gradient textured".split()
    return list(dict.fromkeys(extra + list(COLOURS) + list(BG_COLOURS) + list(shapes)))


def build(recipe: Recipe):
    """Untrained components: (tokenizer, text_encoder, vae, transformer, scheduler)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer(vocabulary(recipe.shapes))
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                           num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0))
    n = len(recipe.vae_channels)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, latent_channels=recipe.latent_channels,
                                 layers_per_block=1, norm_num_groups=8, block_out_channels=recipe.vae_channels,
                                 down_block_types=("CogVideoXDownBlock3D",) * n, up_block_types=("CogVideoXUpBlock3D",) * n,
                                 temporal_compression_ratio=4, sample_height=recipe.size, sample_width=recipe.size)
    latent = recipe.latent_size
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=recipe.heads, attention_head_dim=recipe.head_dim, in_channels=recipe.latent_channels,
        out_channels=recipe.latent_channels, time_embed_dim=128, text_embed_dim=64, num_layers=recipe.layers,
        sample_height=latent, sample_width=latent, sample_frames=recipe.frames, patch_size=recipe.patch,
        max_text_seq_length=recipe.text_len, use_rotary_positional_embeddings=True)
    scheduler = CogVideoXDDIMScheduler(timestep_spacing="trailing", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, snr_shift_scale=1.0, beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=True)
    return tokenizer, text_encoder, vae, transformer, scheduler


def _seed(stage: int, step: int, batch: int, i: int) -> int:
    """The world seed of clip i of a step's batch: distinct per stage, never below TRAIN_SEED0."""
    return TRAIN_SEED0 + stage * 10_000_000 + step * batch + i


def render_batch(recipe: Recipe, step: int, batch: int, stage: int) -> list[Clip]:
    """The clips of one step, deterministic in (stage, step)."""
    return [make_clip(_seed(stage, step, batch, i), recipe.frames, recipe.size, recipe.size, radius=recipe.object_radius,
                      shapes=recipe.shapes) for i in range(batch)]


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [B, T, H, W, 3] -> pixels [B, 3, T, H, W] in [-1, 1]."""
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0).permute(0, 4, 1, 2, 3)


def to_video(clips: list[Clip]) -> torch.Tensor:
    """Pixels [B, 3, T, H, W] in [-1, 1]."""
    return frames_to_video(np.stack([c.frames for c in clips]))


def clip_batch(recipe: Recipe, step: int, batch: int, stage: int):
    """Clips for one step, deterministic in (stage, step): pixels [B, 3, T, H, W] in [-1, 1] and prompts."""
    clips = render_batch(recipe, step, batch, stage)
    return to_video(clips), [c.prompt for c in clips]


# --------------------------------------------------------------------------------------- checkpoints
def _save(work: Path, name: str, module, state: dict) -> None:
    from safetensors.torch import save_model

    tmp = work / f".{name}.tmp"
    save_model(module, str(tmp))  # handles tied weights (T5's shared embedding)
    os.replace(tmp, work / f"{name}.safetensors")
    (work / f".{name}.json.tmp").write_text(json.dumps(state))
    os.replace(work / f".{name}.json.tmp", work / f"{name}.json")


def _load(work: Path, name: str, module) -> dict:
    from safetensors.torch import load_model

    if not (work / f"{name}.json").is_file():
        return {"step": 0}
    load_model(module, str(work / f"{name}.safetensors"))
    return json.loads((work / f"{name}.json").read_text())


def _load_stage2_text(work: Path, text_encoder) -> None:
    """Stage 2's T5: its own checkpoint once it has saved one, before that stage 1b's (or init_from's)."""
    if not _load(work, "text_encoder", text_encoder)["step"]:
        _load(work, "text_pretrain", text_encoder)


def _update(opt, loss, bar, clip: list | None = None, show: bool = True) -> None:
    """One optimiser step on `loss` (gradient norm clipped to 1 over `clip`), reported on the bar when `show`
    (reading the loss waits for the GPU, so the fast stages show it every few steps)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()
    bar.advance(f"loss {loss.item():.4f}" if show else None)


def _due(recipe: Recipe, step: int, total: int) -> bool:
    """Whether to checkpoint after `step` (0-based)."""
    return (step + 1) % recipe.checkpoint_every == 0 or step + 1 == total


# ------------------------------------------------------------------------------------------ stages
def latent_rgb(video: torch.Tensor, spatial: int, temporal: int = 4) -> torch.Tensor:
    """The frames as the latent grid sees them: [B, 3, T, H, W] -> [B, 3, 1 + (T-1)/temporal, H/s, W/s], the
    first frame alone and then the mean of each group of `temporal` frames, area-downsampled by `spatial`."""
    first, rest = video[:, :, :1], video[:, :, 1:]
    b, c, t, h, w = rest.shape
    groups = rest.reshape(b, c, t // temporal, temporal, h, w).mean(dim=3)
    return torch.nn.functional.avg_pool3d(torch.cat([first, groups], dim=2), (1, spatial, spatial))


def _recipe_folder(path: str) -> Path:
    """A folder a recipe names: relative paths are of this repository (assets/...)."""
    folder = Path(path)
    return folder if folder.is_absolute() else Path(__file__).resolve().parents[2] / folder


def adopt_vae(recipe: Recipe, vae, work: Path) -> None:
    """Stages 1 and 3 done by copying `recipe.vae_from`'s VAE into the work folder (as finished checkpoints)."""
    from diffusers import AutoencoderKLCogVideoX

    if (work / "decoder.json").is_file():
        return
    folder = _recipe_folder(recipe.vae_from)
    if not (folder / "vae").is_dir():
        raise SystemExit(f"recipe takes its VAE from {folder}, which has no vae/ folder: train the model this "
                         "recipe builds on into it first (`make toy-model` does; v8b-v9: --recipe v8 --out out/toy-v8)")
    source = AutoencoderKLCogVideoX.from_pretrained(folder / "vae")
    if source.config.block_out_channels != list(recipe.vae_channels) or source.config.latent_channels != recipe.latent_channels:
        raise SystemExit(f"{folder}/vae has another shape than the recipe's VAE (channels {recipe.vae_channels}, "
                         f"latent {recipe.latent_channels})")
    vae.load_state_dict(source.state_dict())
    _save(work, "vae", vae, {"step": recipe.vae_steps, "from": str(folder)})
    _save(work, "decoder", vae, {"step": recipe.decoder_steps, "from": str(folder)})


def adopt_model(recipe: Recipe, parts, work: Path) -> None:
    """`recipe.init_from`'s transformer and text encoder as the start of stage 2 (at step 0, with that model's
    latent scaling) and as a finished stage 1b."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    if (work / "transformer.json").is_file():
        return
    folder = _recipe_folder(recipe.init_from)
    missing = [p for p in ("transformer", "text_encoder", "vae") if not (folder / p).is_dir()]
    if missing:
        raise SystemExit(f"recipe starts from the toy pipeline {folder}, which has no {', '.join(missing)} folder: "
                         f"train that model into it first (or copy it there)")
    if recipe.vae_from is None or _recipe_folder(recipe.vae_from) != folder:
        raise SystemExit(f"a recipe with init_from must take its VAE from the same folder (vae_from={str(folder)!r})")
    tokenizer, text_encoder, _, transformer, _ = parts
    if AutoTokenizer.from_pretrained(folder / "tokenizer").get_vocab() != tokenizer.get_vocab():
        raise SystemExit(f"{folder}'s tokenizer has another vocabulary than the recipe's world (shapes {recipe.shapes})")
    source = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer")
    theirs, mine = dict(source.config), dict(transformer.config)
    differ = sorted(k for k in mine if not k.startswith("_") and theirs.get(k) != mine[k])
    if differ:
        raise SystemExit(f"{folder}/transformer differs from the recipe's ({', '.join(differ)})")
    transformer.load_state_dict(source.state_dict())
    text_encoder.load_state_dict(T5EncoderModel.from_pretrained(folder / "text_encoder").state_dict())
    scaling = AutoencoderKLCogVideoX.load_config(folder / "vae")["scaling_factor"]
    _save(work, "text_pretrain", text_encoder, {"step": recipe.text_steps, "from": str(folder)})
    _save(work, "transformer", transformer, {"step": 0, "scaling": scaling, "from": str(folder)})


def train_vae(recipe: Recipe, vae, work: Path, device: str, progress: Progress) -> None:
    if recipe.vae_from:
        adopt_vae(recipe, vae, work)
    state = _load(work, "vae", vae)
    vae.to(device).train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr)  # moments restart on resume: cheap to re-warm
    with progress.task("train VAE", total=recipe.vae_steps) as bar:
        for _ in range(state["step"]):
            bar.advance()
        for step in range(state["step"], recipe.vae_steps):
            video, _ = clip_batch(recipe, step, recipe.vae_batch, stage=1)
            video = video.to(device)
            dist = vae.encode(video).latent_dist
            recon = vae.decode(dist.sample()).sample
            loss = (recon - video).abs().mean() + recipe.kl_weight * dist.kl().mean()
            if recipe.latent_rgb_weight:
                rgb = latent_rgb(video, recipe.size // dist.mean.shape[-1])
                loss = loss + recipe.latent_rgb_weight * (dist.mean[:, :3] - rgb).abs().mean()
            _update(opt, loss, bar)
            if _due(recipe, step, recipe.vae_steps):
                _save(work, "vae", vae, {"step": step + 1, "loss": loss.item()})
    vae.eval().requires_grad_(False)


def finetune_decoder(recipe: Recipe, vae, work: Path, device: str, progress: Progress) -> None:
    """Train the decoder alone on the frozen encoder's mean latents: the latent space the transformer
    learnt is unchanged, while the frames it decodes to get sharper. L1 plus an L1 on spatial gradients
    (edges are what a blurry decoder loses first)."""
    state = _load(work, "decoder", vae)
    vae.to(device).eval().requires_grad_(False)
    vae.decoder.train().requires_grad_(True)
    if vae.post_quant_conv is not None:
        vae.post_quant_conv.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.decoder_lr)
    with progress.task("fine-tune VAE decoder", total=recipe.decoder_steps) as bar:
        for _ in range(state["step"]):
            bar.advance()
        for step in range(state["step"], recipe.decoder_steps):
            video, _ = clip_batch(recipe, step, recipe.vae_batch, stage=4)
            video = video.to(device)
            with torch.no_grad():
                z = vae.encode(video).latent_dist.mode()
            recon = vae.decode(z).sample
            loss = (recon - video).abs().mean()
            for dim in (-1, -2):
                loss = loss + (recon.diff(dim=dim) - video.diff(dim=dim)).abs().mean()
            _update(opt, loss, bar)
            if _due(recipe, step, recipe.decoder_steps):
                _save(work, "decoder", vae, {"step": step + 1, "loss": loss.item()})
    vae.eval().requires_grad_(False)


def _parse_labels(prompts: list[str], shapes: tuple[str, ...] = SHAPES) -> torch.Tensor:
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
    state = _load(work, "text_pretrain", text_encoder)
    if state["step"] >= recipe.text_steps:
        return
    n_shapes = len(recipe.shapes)
    sizes = (len(COLOURS), n_shapes, len(COLOURS) + 1, n_shapes + 1, len(COLOURS), len(BACKGROUNDS))
    torch.manual_seed(recipe.seed + 7)
    heads = torch.nn.ModuleList(torch.nn.Linear(text_encoder.config.d_model, n) for n in sizes).to(device)
    text_encoder.to(device).train().requires_grad_(True)
    opt = torch.optim.AdamW(list(text_encoder.parameters()) + list(heads.parameters()), lr=recipe.text_lr)
    with progress.task("train text encoder", total=recipe.text_steps) as bar:
        for _ in range(state["step"]):
            bar.advance()
        for step in range(state["step"], recipe.text_steps):
            prompts = [scene_prompt(_seed(5, step, recipe.text_batch, i), shapes=recipe.shapes)
                       for i in range(recipe.text_batch)]
            labels = _parse_labels(prompts, recipe.shapes).to(device)
            ids = tokenizer(prompts, padding="max_length", max_length=recipe.text_len, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            out = text_encoder(ids)[0]  # [B, L, D]
            logits = [h(out) for h in heads]  # each [B, L, n]
            loss = sum(torch.nn.functional.cross_entropy(lg.flatten(0, 1), labels[:, k].repeat_interleave(out.shape[1]))
                       for k, lg in enumerate(logits)) / len(heads)
            _update(opt, loss, bar)
            if _due(recipe, step, recipe.text_steps):
                acc = min(float((lg.argmax(-1) == labels[:, k, None]).float().mean()) for k, lg in enumerate(logits))
                _save(work, "text_pretrain", text_encoder, {"step": step + 1, "loss": loss.item(), "worst_accuracy": acc})
    text_encoder.eval().requires_grad_(False)


@torch.no_grad()
def _encode(vae, video, scaling: float):
    return (vae.encode(video).latent_dist.mode() * scaling).permute(0, 2, 1, 3, 4)  # [B, F, C, h, w]


def to_latent_grid(mask: np.ndarray, spatial: int, temporal: int = 4) -> np.ndarray:
    """bool [T, H, W] pixel-frame mask -> float [F, h, w]: a latent frame covers its group of pixel frames (set
    in any of them), averaged over each latent pixel's block."""
    groups = [mask[:1]] + [mask[1 + temporal * k: 1 + temporal * (k + 1)] for k in range((len(mask) - 1) // temporal)]
    lat = np.stack([g.any(axis=0) for g in groups]).astype(np.float32)
    t, h, w = lat.shape
    return lat.reshape(t, h // spatial, spatial, w // spatial, spatial).mean(axis=(2, 4))


def latent_mask(clip: Clip, spatial: int, temporal: int = 4) -> np.ndarray:
    """Object coverage of a clip at latent resolution [F, h, w] (any object)."""
    return to_latent_grid(clip.masks.any(axis=0), spatial, temporal)


def _bank_rows(recipe: Recipe, step: int, batch: int):
    """Batch `step` of the latent bank, rendered: (uint8 frames [B, T, H, W, 3], prompts, [B, F, h, w] object
    coverage, [B, F, h, w] shape ambiguity or None). A top-level function so worker processes can run it."""
    clips = render_batch(recipe, step, batch, stage=2)
    masks = np.stack([latent_mask(c, recipe.spatial) for c in clips])
    ambiguity = (np.stack([to_latent_grid(shape_ambiguity(c, recipe.shapes), recipe.spatial) for c in clips])
                 if recipe.shape_weight else None)
    return np.stack([c.frames for c in clips]), [c.prompt for c in clips], masks, ambiguity


def _rendered(recipe: Recipe, batches: int, batch: int, workers: int):
    """The bank's batches in order, rendered by `workers` processes (0: this one). Rendering is numpy on the CPU
    and costs as much as the VAE pass, so a machine with many cores and a GPU wants both at once."""
    from functools import partial

    render = partial(_bank_rows, recipe, batch=batch)
    if workers <= 0:
        yield from map(render, range(batches))
        return
    import multiprocessing

    # fork: the workers only run numpy, never CUDA, so a CUDA context in the parent is harmless
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(render, range(batches), chunksize=4)


def _latent_bank(recipe: Recipe, vae, scaling: float, work: Path, device: str, progress: Progress, workers: int = 0):
    """`recipe.bank` training clips encoded once: ([B, F, C, h, w] scaled latents, prompts, [B, F, 1, h, w]
    object coverage, [B, F, 1, h, w] shape ambiguity (`world.shape_ambiguity`; None when the recipe does not
    weigh it)), kept in the work folder so a resumed run does not encode them again. The same for any
    `workers`."""
    from safetensors.torch import load_file, save_file

    path = work / "latents.safetensors"
    if path.is_file() and (work / "latents.json").is_file():
        meta = json.loads((work / "latents.json").read_text())
        if meta.get("size") == recipe.bank and meta.get("scaling") == scaling:
            saved = load_file(str(path))
            if "masks" in saved and ("ambiguity" in saved or not recipe.shape_weight):  # older banks: encoded again
                return saved["latents"], meta["prompts"], saved["masks"], saved.get("ambiguity")
    chunks, prompts, masks, ambiguity, batch = [], [], [], [], 32
    with progress.task("encode training clips", total=recipe.bank) as bar:
        for frames, p, m, a in _rendered(recipe, -(-recipe.bank // batch), batch, workers):
            chunks.append(_encode(vae, frames_to_video(frames).to(device), scaling).cpu())
            prompts += p
            masks.append(m)
            if a is not None:
                ambiguity.append(a)
            bar.advance(advance=batch)
    latents = torch.cat(chunks)[: recipe.bank].contiguous()
    saved = {"latents": latents, "masks": torch.from_numpy(np.concatenate(masks)[: recipe.bank])[:, :, None].contiguous()}
    if ambiguity:
        saved["ambiguity"] = torch.from_numpy(np.concatenate(ambiguity)[: recipe.bank])[:, :, None].contiguous()
    save_file(saved, str(work / ".latents.tmp"))
    os.replace(work / ".latents.tmp", path)
    (work / "latents.json").write_text(json.dumps({"size": recipe.bank, "scaling": scaling, "prompts": prompts[: recipe.bank]}))
    return latents, prompts[: recipe.bank], saved["masks"], saved.get("ambiguity")


def noised(alphas: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """x0, noise [B, F, C, h, w], t [B] (or 0-d) timesteps -> (x_t, v target): the forward process and the
    v-prediction target under `alphas` (the scheduler's alphas_cumprod)."""
    a = alphas[t].view(-1, 1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, a.sqrt() * noise - (1 - a).sqrt() * x0


def _rope(recipe: Recipe, transformer, device: str):
    """The transformer's RoPE tables for the recipe's latent grid."""
    from ..backbone import rope_tables

    tokens = recipe.latent_size // recipe.patch
    return rope_tables(transformer.config, ((recipe.frames - 1) // 4 + 1, tokens, tokens), device)


@torch.no_grad()
def _ema_step(ema: dict, module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, in one fused pass (ema lives on the module's device)."""
    state = module.state_dict()
    mine, live = [ema[k] for k in state], [v.detach() for v in state.values()]
    if decay == 0.0:
        torch._foreach_copy_(mine, live)
    else:
        torch._foreach_lerp_(mine, live, 1 - decay)


def _save_ema(work: Path, name: str, ema: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in ema.items()}, str(work / f".{name}.tmp"))
    os.replace(work / f".{name}.tmp", work / f"{name}.safetensors")


def _scaling(recipe: Recipe, vae, device: str) -> float:
    """The latent scaling factor: unit-variance latents, as CogVideoX's scaling factor gives its data."""
    video, _ = clip_batch(recipe, 0, 16, stage=3)
    return float(1.0 / _encode(vae.to(device), video.to(device), 1.0).std())


def lr_factor(step: int, total: int, warmup: int = 0) -> float:
    """Stage 2's learning-rate multiplier: a linear warm-up over `warmup` steps times a cosine to 0 at `total`."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return warm * 0.5 * (1 + float(np.cos(np.pi * (min(1.0, step / total) if total else 1.0))))


class StepPlan:
    """Stage 2's step count, cut to a wall-clock deadline: planned from the speed of the first `probe` steps,
    planned again after 10x as many (other work on the machine may have started or stopped meanwhile; the
    cosine schedule follows the count, so the learning rate still ends near zero), and stopped at the deadline
    whatever the plan said."""

    def __init__(self, steps: int, deadline: float | None, probe: int = 30):
        self.total, self.deadline, self.probe = steps, deadline, probe
        self._start = None

    def tick(self, step: int, first: int) -> bool:
        """Called after each step; True when the count changed at this one."""
        import time

        if self.deadline is None:
            return False
        now, done = time.time(), step - first + 1
        if done == 1:
            self._start = now  # the first step (allocations, warm-up) is not timed
        elif done in (self.probe, 10 * self.probe):
            rate = (now - self._start) / (done - 1)
            self.total = max(step + 1, min(self.total, step + 1 + int((self.deadline - now) / rate)))
            return True
        elif now > self.deadline and self.total > step + 1:
            self.total = step + 1
            return True
        return False


def draw_batch(recipe: Recipe, gen: torch.Generator, bank_size: int, latent_shape: tuple[int, ...],
               noise_gen: torch.Generator | None = None):
    """One stage-2 batch's randomness from the seeded CPU generator, in the order training has always drawn
    it: ([B] bank rows, [B] bool empty prompt, [B] timesteps 999 * u**high_noise_power, [B, *latent_shape]
    noise). With `noise_gen` (Recipe.device_noise) the noise comes from it, on its device."""
    idx = torch.randint(bank_size, (recipe.batch,), generator=gen)
    empty = torch.tensor([torch.rand(1, generator=gen).item() < recipe.empty_prompt for _ in idx])
    t = (999 * torch.rand(recipe.batch, generator=gen) ** recipe.high_noise_power).round().long()
    shape = (recipe.batch,) + tuple(latent_shape)
    if noise_gen is not None:
        return idx, empty, t, torch.randn(shape, generator=noise_gen, device=noise_gen.device)
    return idx, empty, t, torch.randn(shape, generator=gen)


def _token_table(tokenizer, prompts: list[str], length: int, device: str):
    """Prompts tokenised once: ([U, L] ids of the unique prompts, [N] row of each prompt, row of "")."""
    unique = sorted(set(prompts) | {""})
    ids = tokenizer(unique, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    row = {p: i for i, p in enumerate(unique)}
    return ids.to(device), torch.tensor([row[p] for p in prompts]), row[""]


def train_transformer(recipe: Recipe, parts, work: Path, device: str, progress: Progress,
                      deadline: float | None = None, workers: int = 0) -> tuple[float, int]:
    """Stage 2; returns (latent scaling, steps trained). With a `deadline` (time.time()), the step count is
    cut so the stage ends by then (`StepPlan`)."""
    tokenizer, text_encoder, vae, transformer, scheduler = parts
    vae.to(device)
    text_encoder.to(device).eval().requires_grad_(False)
    state = _load(work, "transformer", transformer)
    _load_stage2_text(work, text_encoder)
    transformer.to(device)
    ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    if (work / "transformer_ema.safetensors").is_file():
        from safetensors.torch import load_file

        ema = load_file(str(work / "transformer_ema.safetensors"), device=str(device))
    if "scaling" not in state:
        state["scaling"] = _scaling(recipe, vae, device)
    scaling = state["scaling"]
    bank, bank_prompts, masks, ambiguity = _latent_bank(recipe, vae, scaling, work, device, progress, workers)
    if device != "cpu":  # the whole bank fits an accelerator: no host-to-device copy per step
        bank, masks = bank.to(device), masks.to(device)
        ambiguity = ambiguity.to(device) if ambiguity is not None else None
    id_table, prompt_row, empty_row = _token_table(tokenizer, bank_prompts, recipe.text_len, device)
    transformer.train().requires_grad_(True)
    text_params = list(text_encoder.parameters())
    opt = torch.optim.AdamW([{"params": transformer.parameters()}, {"params": text_params}], lr=recipe.lr, weight_decay=0.01)
    plan = StepPlan(recipe.steps, deadline)
    first = state["step"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s + first, plan.total, recipe.warmup))
    alphas = scheduler.alphas_cumprod.to(device, torch.float32)
    rope = _rope(recipe, transformer, device)
    gen = torch.Generator().manual_seed(recipe.seed + state["step"])
    noise_gen = torch.Generator(device).manual_seed(recipe.seed + 3_000_000 + state["step"]) if recipe.device_noise else None
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=recipe.amp)
    with progress.task("train transformer", total=recipe.steps) as bar:
        for _ in range(state["step"]):
            bar.advance()
        step = first
        while step < plan.total:
            idx, empty, t, noise = draw_batch(recipe, gen, len(bank), bank.shape[1:], noise_gen)
            x0, t, noise = bank[idx].to(device), t.to(device), noise.to(device)
            train_text = step >= recipe.text_from
            text_encoder.train(train_text).requires_grad_(train_text)
            ids = id_table[torch.where(empty, empty_row, prompt_row[idx]).to(device)]
            with torch.set_grad_enabled(train_text):
                text = text_encoder(ids)[0]
            xt, target = noised(alphas, x0, noise, t)
            with autocast:
                pred = transformer(hidden_states=xt, encoder_hidden_states=text, timestep=t, image_rotary_emb=rope,
                                   return_dict=False)[0].float()
            object_weight = recipe.object_weight if step >= recipe.object_weight_from else 0.0
            weight = 1.0 + object_weight * masks[idx].to(device)  # [B, F, 1, h, w]
            if ambiguity is not None:
                weight = weight + recipe.shape_weight * ambiguity[idx].to(device)
            loss = (weight * (pred - target) ** 2).mean() / weight.mean()
            _update(opt, loss, bar, list(transformer.parameters()) + text_params, show=device == "cpu" or step % 25 == 0)
            sched.step()
            _ema_step(ema, transformer, 0.0 if step <= recipe.ema_start else recipe.ema)  # 0: copy the live weights
            if plan.tick(step, first):
                bar.set_total(plan.total)
                progress.log(f"stage 2 planned to {plan.total} steps to end by the deadline")
            if _due(recipe, step, plan.total):
                progress.log(f"stage 2 step {step + 1}/{plan.total} loss {loss.item():.4f}")
                _save_ema(work, "transformer_ema", ema)
                _save(work, "text_encoder", text_encoder, {"step": step + 1})
                _save(work, "transformer", transformer, {"step": step + 1, "loss": loss.item(), "scaling": scaling,
                                                         "planned": plan.total})
            step += 1
    transformer.load_state_dict(ema)
    text_encoder.eval().requires_grad_(False)
    transformer.eval().requires_grad_(False)
    return scaling, plan.total


def foil_prompt(prompt: str, gen: torch.Generator, shapes: tuple[str, ...] = SHAPES) -> str:
    """The prompt with its first object's shape swapped for another of the world's: stage 2b's wrong answer."""
    from .judge import swap_word

    return swap_word(prompt, "shape", int(torch.randint(len(shapes) - 1, (1,), generator=gen)), shapes)


def object_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred, target [B, F, C, h, w], mask [B, F, 1, h, w] object coverage -> [B] squared error per
    covered latent pixel (mean over channels)."""
    err = ((pred - target) ** 2).mean(dim=2, keepdim=True)
    return (err * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1e-6)


def tune_shapes(recipe: Recipe, parts, work: Path, device: str, progress: Progress) -> None:
    """Stage 2b (see Recipe.tune_*): fine-tune the stage-2 transformer (EMA weights) so that the shape word
    changes its prediction. The T5 stays frozen: its tokens already carry the shape (stage 1b)."""
    if not recipe.tune_steps:
        return
    from safetensors.torch import load_file

    tokenizer, text_encoder, vae, transformer, scheduler = parts
    scaling = json.loads((work / "transformer.json").read_text())["scaling"]
    state = _load(work, "tune", transformer)  # step 0: keeps the stage-2 EMA weights it was given
    transformer.to(device)
    ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    if (work / "tune_ema.safetensors").is_file():
        ema = load_file(str(work / "tune_ema.safetensors"), device=str(device))
    bank, bank_prompts, masks, ambiguity = _latent_bank(recipe, vae.to(device), scaling, work, device, progress)
    if recipe.tune_region == "shapes":
        if ambiguity is None:
            raise SystemExit("tune_region 'shapes' needs the bank's ambiguity masks (a recipe with shape_weight > 0)")
        masks = (masks + ambiguity).clamp(max=1.0)
    text_encoder.to(device).eval().requires_grad_(False)
    transformer.train().requires_grad_(True)
    opt = torch.optim.AdamW(transformer.parameters(), lr=recipe.tune_lr, weight_decay=0.01)
    alphas = scheduler.alphas_cumprod.to(device, torch.float32)
    rope = _rope(recipe, transformer, device)
    gen = torch.Generator().manual_seed(recipe.seed + 2_000_000 + state["step"])
    lo, hi = recipe.tune_t
    with progress.task("shape fine-tune (stage 2b)", total=recipe.tune_steps) as bar:
        for _ in range(state["step"]):
            bar.advance()
        for step in range(state["step"], recipe.tune_steps):
            idx = torch.randint(len(bank), (recipe.batch,), generator=gen)
            keep = torch.rand(recipe.batch, generator=gen) >= recipe.empty_prompt  # empty prompts keep CFG's branch
            prompts = [bank_prompts[i] if k else "" for i, k in zip(idx.tolist(), keep.tolist())]
            foils = [foil_prompt(p, gen, recipe.shapes) if p else "" for p in prompts]
            x0, m = bank[idx].to(device), masks[idx].to(device)
            t = torch.randint(lo, hi + 1, (recipe.batch,), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            xt, target = noised(alphas, x0, noise, t)
            n = 2 if recipe.tune_contrast else 1  # without the hinge the foil's pass would be wasted
            ids = tokenizer((prompts + foils)[: n * len(prompts)], padding="max_length", max_length=recipe.text_len,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            with torch.no_grad():
                text = text_encoder(ids)[0]
            out = transformer(hidden_states=xt.repeat(n, 1, 1, 1, 1), encoder_hidden_states=text,
                              timestep=t.repeat(n), image_rotary_emb=rope, return_dict=False)[0]
            pred = out[: len(prompts)]
            weight = 1.0 + recipe.object_weight * m + recipe.tune_edge_weight * 4 * m * (1 - m)
            loss = fit = (weight * (pred - target) ** 2).mean() / weight.mean()
            gap = None
            if n == 2:
                gap = object_errors(out[len(prompts):], target, m).log() - object_errors(pred, target, m).log()  # > 0: right
                hinge = (torch.relu(recipe.tune_margin - gap) * keep.to(device)).sum() / keep.sum().clamp_min(1)
                loss = fit + recipe.tune_contrast * hinge
            _update(opt, loss, bar, list(transformer.parameters()))
            _ema_step(ema, transformer, recipe.ema)
            if _due(recipe, step, recipe.tune_steps):
                _save_ema(work, "tune_ema", ema)
                info = {"step": step + 1, "loss": loss.item(), "fit": fit.item()}
                if gap is not None and keep.any():
                    info["foil_gap"] = float(gap.detach()[keep.to(device)].mean())
                _save(work, "tune", transformer, info)
    transformer.load_state_dict(ema)
    transformer.eval().requires_grad_(False)


def export(recipe: Recipe, parts, scaling: float, out: Path) -> Path:
    """Save a diffusers pipeline folder (+ ditflow.json defaults), atomically."""
    import shutil

    from diffusers import CogVideoXPipeline

    tokenizer, text_encoder, vae, transformer, scheduler = parts
    vae.register_to_config(scaling_factor=scaling)
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder.cpu(), vae=vae.cpu(),
                             transformer=transformer.cpu(), scheduler=scheduler)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    (tmp / "ditflow.json").write_text(json.dumps(recipe.defaults, indent=1))
    (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def export_checkpoint(recipe: Recipe, work: Path, out: Path) -> Path:
    """Export whatever the work folder holds now (e.g. to try a model while stage 2 still runs)."""
    from safetensors.torch import load_file

    parts = build(recipe)
    _load(work, "vae", parts[2])
    _load(work, "decoder", parts[2])
    state = _load(work, "transformer", parts[3])
    _load_stage2_text(work, parts[1])  # as stage 2 would start or resume
    for name in ("transformer_ema", "tune_ema"):  # stage 2b's weights, when it ran, replace stage 2's
        if (work / f"{name}.safetensors").is_file():
            parts[3].load_state_dict(load_file(str(work / f"{name}.safetensors")))
    if "scaling" not in state:
        raise SystemExit(f"no transformer checkpoint in {work} yet")
    if "planned" in state:  # a run cut to a deadline (--budget): its recipe is the count it planned
        recipe = replace(recipe, steps=state["planned"])
    return export(recipe, parts, state["scaling"], out)


def model_world(model: Path) -> World:
    """The world (object radii, shapes) a toy model folder was trained on, from its recipe.json, so benchmarks
    draw references like its training clips. A folder without one gets today's world; v3's recipe predates
    the radius setting (it drew 0.10-0.18), v1-v6's the shape set (the classic SHAPES)."""
    path = Path(model) / "recipe.json"
    if not path.is_file():
        return CLASSIC_WORLD
    recipe = json.loads(path.read_text())
    return World(tuple(recipe.get("object_radius", (0.10, 0.18))), tuple(recipe.get("shapes", SHAPES)))


def model_world_clip(seed: int, model: Path) -> Clip:
    """World clip `seed` as a toy model folder's training clips were drawn (its recipe's size, frames, radius,
    shapes)."""
    recipe, world = json.loads((Path(model) / "recipe.json").read_text()), model_world(model)
    return make_clip(seed, recipe["frames"], recipe["size"], recipe["size"], radius=world.radius, shapes=world.shapes)


def held_out_clips(n: int, frames: int, height: int, width: int, radius: tuple[float, float] = OBJECT_RADIUS,
                   motions: tuple[str, ...] | None = None, shapes: tuple[str, ...] = SHAPES) -> list[tuple[int, Clip]]:
    """(seed, clip) for the first n single-object clips of held-out seeds (from 0; training starts at
    TRAIN_SEED0), optionally only of some kinds of motion: the references every toy benchmark uses."""
    bad = set(motions or ()) - set(MOTIONS)
    if bad:
        raise ValueError(f"unknown motion(s) {', '.join(sorted(bad))}; the world has {', '.join(MOTIONS)}")
    out, seed = [], 0
    while len(out) < n:
        clip = make_clip(seed, frames, height, width, radius=radius, shapes=shapes)
        if len(clip.shapes) == 1 and (not motions or clip.motion in motions):
            out.append((seed, clip))
        seed += 1
    return out


def check_work(recipe: Recipe, work: Path) -> None:
    """Refuse to resume checkpoints of another recipe (shapes, or a silently different model)."""
    path = work / "recipe.json"
    if not path.is_file():
        return
    old = stored_recipe(json.loads(path.read_text()))
    mine = json.loads(json.dumps(asdict(recipe)))  # tuples as lists, as stored
    # step counts may grow on resume; everything else shapes the weights
    growing = ("steps", "vae_steps", "decoder_steps", "text_steps", "tune_steps", "defaults", "checkpoint_every")
    # stage 2b comes after stage 2: before it has run, its settings (absent in v4's recipe) do not shape the weights
    later = () if (work / "tune.json").is_file() else tuple(k for k in mine if k.startswith("tune_"))
    differ = sorted(k for k in mine if k not in growing + later and old.get(k) != mine[k])
    if differ:
        raise SystemExit(f"{work} holds checkpoints of another recipe (differs in {', '.join(differ)}); "
                         f"pass another --work or remove it")


def stored_recipe(old: dict) -> dict:
    """A recipe.json of any version with the settings it predates at the values that reproduce it."""
    predated = {"patch": 2,  # recipes before the setting (v1-v4) used patches of 2
                "shape_weight": 0.0,  # v1-v5 had no shape weighting
                "shapes": list(SHAPES),  # v1-v6 drew the classic shapes
                "vae_from": None, "warmup": 0,  # v1-v7 started the cosine at full rate
                "init_from": None, "amp": False, "device_noise": False}  # v1-v8 had none of these
    return {**predated, **old}


def _first_stages(recipe: Recipe, work: Path, device: str, quiet: bool):
    """Check (or claim) the work folder, then stages 1 and 1b: (parts, progress)."""
    work.mkdir(parents=True, exist_ok=True)
    check_work(recipe, work)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
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
    _latent_bank(recipe, parts[2], _scaling(recipe, parts[2], device), work, device, progress, workers)


def train(recipe: Recipe, work: Path, out: Path, device: str = "cpu", quiet: bool = False,
          deadline: float | None = None, workers: int = 0) -> Path:
    """The whole recipe into the pipeline folder `out`. `deadline` (time.time()) cuts stage 2's step count so it
    ends by then (the count trained is what the exported recipe.json records); `workers` render the bank."""
    parts, progress = _first_stages(recipe, work, device, quiet)
    scaling, steps = train_transformer(recipe, parts, work, device, progress, deadline, workers)
    recipe = replace(recipe, steps=steps)
    tune_shapes(recipe, parts, work, device, progress)
    finetune_decoder(recipe, parts[2], work, device, progress)
    return export(recipe, parts, scaling, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("out/toy-train"), help="checkpoints (resumed if present)")
    ap.add_argument("--out", type=Path, default=Path("assets/toy-cogvideox"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="v9",
                    help="named recipe: v9 (the shipped model: v8 trained further from out/toy-v8, bf16; minutes on "
                         "a GPU), v8 (v7's world and loss in batches of 256; minutes on a GPU, about 20 hours on 2 "
                         "CPU cores; v9 starts from it), v4 (the CPU recipe, shipped before v8: about 70 min "
                         "on 2 cores), v6 (larger objects, shape-weighted loss), v7 (v6's loss, shapes that differ at "
                         "the token grid, v4's VAE), v7b (v7, then stage 2b over the shape region at t = 700-900), "
                         "v8-deep (v8 with 12 blocks), v8b (stage 2b on v8's weights from out/toy-v8), v8b-low and "
                         "v8c (other CPU fine-tunes of v8, measured, not shipped)")
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int, help="stage 2 batch size")
    ap.add_argument("--bank", type=int, help="training clips encoded once for stage 2")
    ap.add_argument("--decoder-steps", type=int)
    ap.add_argument("--text-steps", type=int, help="stage 1b steps (T5 role pretraining; 0 = off, as in v3)")
    ap.add_argument("--tune-steps", type=int, help="stage 2b steps (shape-discriminative fine-tune; 0 = off, as in v4)")
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
    args = ap.parse_args()
    overrides = {k: v for k, v in (("vae_steps", args.vae_steps), ("steps", args.steps),
                                   ("decoder_steps", args.decoder_steps), ("text_steps", args.text_steps),
                                   ("tune_steps", args.tune_steps), ("batch", args.batch), ("bank", args.bank))
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
        _load(args.work, "vae", vae)
        finetune_decoder(recipe, vae, args.work, args.device, Progress(args.quiet))
        return
    import time

    deadline = time.time() + args.budget if args.budget else None
    if args.device.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # TF32 matrix products: the GPU recipes' speed, not their sums
    print(train(recipe, args.work, args.out, args.device, args.quiet, deadline, args.workers))


if __name__ == "__main__":
    main()
