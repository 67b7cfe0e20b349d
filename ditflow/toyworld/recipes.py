"""The toy model's recipes: every setting that shapes its weights, and the named ones (`--recipe`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .world import COARSE_SHAPES, OBJECT_RADIUS, SHAPES


@dataclass(frozen=True)
class Recipe:
    size: int = 64  # pixels; the VAE divides by 4 -> 16x16 latent -> 8x8 patches of 2x2. At 96 px (patch 3) the
    # VAE keeps more shape (88% against 65%), but the transformer still draws circles and guidance moves them
    # less well (measured: docs/toy-model.md)
    object_radius: tuple[float, float] = OBJECT_RADIUS  # the world's object sizes (fractions of the frame side;
    # smaller ones lose their shape through the VAE: world.OBJECT_RADIUS)
    shapes: tuple[str, ...] = SHAPES  # the world's shape set (v8: COARSE_SHAPES, which differ at the token grid)
    vae_from: str | None = None  # a toy pipeline folder whose VAE (decoder fine-tune included) replaces stages 1
    # and 3: the VAE only reconstructs pixels, so a world of other shapes can reuse it (v8 takes v4's)
    frames: int = 17  # -> 5 latent frames
    vae_channels: tuple[int, ...] = (16, 32, 32)  # 3 levels: spatial 4, temporal 4
    latent_channels: int = 4  # 3 anchored to the pixels + 1 free: free channels hold fine texture that a
    # transformer this small cannot model (with 5 free its samples are patch-grid noise), while a pixel-like
    # latent it learns
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
    # latent space is far easier for a small transformer to model (without it, samples are smeared colour fields)
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
    shape_weight: float = 0.0  # extra loss weight where the world's shapes disagree (world.shape_ambiguity; v8: 2):
    # the shape word decides only those pixels, a few percent of an object's loss, so v4 (without it) ignores it
    object_weight_from: int = 0  # the step it starts (0: from step 0)
    text_from: int = 0  # the T5 trains with the transformer from here: frozen random, it gives a bag of words
    # (the transformer has no text positions), so "a blue square on a grey background" cannot tell object
    # colour from background colour
    text_steps: int = 3000  # stage 1b (0: off): every T5 output token learns the whole parse (which colour is
    # the object's, which the background's). Trained only through the transformer, the T5 stays a bag of words:
    # samples paint the background in the object's colour
    text_batch: int = 64
    text_lr: float = 1e-3
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
        # Measured on v4 (benchmarks/sweeps/toy*.toml at commit 7f865d7; docs/toy-model.md): latent mode over
        # steps 35 -> 15 (t ~ 700 -> 300, where make probe-amf finds motion in the last blocks' AMF; 8 references
        # x 3 seeds). lr 0.015 -> 0.005 (toy-v4-optimizer.toml, 20 references x 3 seeds): 9.75 px against 12.93
        # with 0.03 -> 0.01. Mutual weighting: 9.49 px against confidence's 9.75, better in 28 videos of 60 and
        # worse in 14 (toy-v4-clean.toml). emb mode optimises RoPE angles at 0.08 -> 0.03 (toy-v4-clean.toml,
        # toy-v4-emb.toml): 11.90 px against 12.80 at 0.05 -> 0.02 and 14.58 at 0.03 -> 0.01, and stronger
        # embeddings replay better (emb-lr-toy-v4.json); measured carrying the optimised tables past the range,
        # where emb mode restores them
        "guidance_range": [35, 15], "lr": {"latent": [0.015, 0.005], "emb": [0.08, 0.03]}, "opt_mode": "latent",
        "emb_param": "angle", "loss_weighting": "mutual", "injection": False,
    })

    @property
    def spatial(self) -> int:
        """The VAE's spatial factor: one downsampling per level but the last."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.size // self.spatial

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // 4 + 1

    def __post_init__(self):
        unit = self.spatial * self.patch
        if self.size % unit:
            raise ValueError(f"size {self.size} must be a multiple of {unit} (VAE factor x patch {self.patch})")
        if (self.frames - 1) % 4:
            raise ValueError(f"frames {self.frames} must be 4k + 1 (temporal compression 4)")


# Where v8 takes its VAE: v4's (stages 1 and 3 of Recipe()), which v8 and v9 carry unchanged. Not
# assets/toy-cogvideox, where `make toy-model` writes: a recipe must not read its own output. `make toy-model`
# copies the shipped VAE here once, before it trains anything (adopt_vae loads only the weights, the same bytes
# in v4, v8 and v9, so v8 trains the same from either folder).
V4_VAE = "out/toy-v4-vae"

# v8's guidance defaults (benchmarks/sweeps/toy-v8-soft.toml, 10 references x noise seeds 2 and 3): v4's, but the AMF
# loss aims at the reference's soft AMF and spans blocks 6 and 7, with KV injection at block 0: 8.53 px against
# 11.99, better in 17 of 20 videos, MF 0.605 against 0.513
V8_DEFAULTS = {**Recipe().defaults, "guidance_blocks": [6, 7], "reference_flow": "soft", "injection": True}
# v9's guidance defaults: v8's, but emb mode at half the rate and with the model's RoPE tables restored after the
# range (benchmarks/results/sweep-toy-v9-emb*.json, 10 references x noise seeds 2 and 3): prompt match 95% against 30%,
# path error 9.68 px against 9.45
V9_DEFAULTS = {**V8_DEFAULTS, "lr": {"latent": [0.015, 0.005], "emb": [0.04, 0.015]},
               # --fast: chosen by benchmarks/sweeps/toy-fast.toml, checked on seed 1 (docs/performance.md)
               "fast": {"grad_reuse": 5, "amf_window": 3, "amf_frame_distance": 4}}

# Named recipes (`--recipe`). v4 = Recipe(), the CPU recipe (about 70 min on 2 cores).
RECIPES: dict[str, Recipe] = {"v4": Recipe()}
# v8 (a GPU recipe): larger objects of shapes that differ at the token grid, a loss weighted where shapes disagree,
# v4's VAE, batches of 256 from a 64,000-clip bank, warm-up. 7 min on one H200 (the step count below is what
# --budget 439 planned there, so no --budget is needed); about 31 s per step on 2 CPU cores: some 20 hours.
RECIPES["v8"] = replace(Recipe(), object_radius=(0.18, 0.26), shapes=COARSE_SHAPES, shape_weight=2.0, vae_from=V4_VAE,
                        batch=256, lr=6e-4, warmup=300, bank=64_000, steps=2253, checkpoint_every=500,
                        defaults=V8_DEFAULTS)
# v9 (the shipped model): v8 trained further from its weights (out/toy-v8: `--recipe v8 --out out/toy-v8`, or a
# copy of v8's folder), a fresh warm-up to half v8's peak rate, the EMA from the start, a bank twice v8's (its
# first 64,000 clips are v8's), bf16 autocast and noise drawn on the GPU. On one H200: the bank 2 min, then 4,743
# steps in 5 min 20 s (67 ms each; the count --budget 508 planned there, so no --budget is needed)
RECIPES["v9"] = replace(RECIPES["v8"], init_from="out/toy-v8", vae_from="out/toy-v8", lr=3e-4, warmup=100, ema_start=0,
                        bank=128_000, steps=4743, amp=True, device_noise=True, defaults=V9_DEFAULTS)

# Settings no recipe has, found in some stored recipe.json files: stage 2b's (a shape fine-tune with a foil-prompt
# hinge; docs/toy-model.md). At tune_steps 0 the stage does not run and they shape nothing.
RETIRED = ("tune_steps", "tune_lr", "tune_t", "tune_edge_weight", "tune_contrast", "tune_margin", "tune_region")


def stored_recipe(old: dict) -> dict:
    """A stored recipe.json with each setting it lacks at the value that reproduces it (docs/toy-model.md: old
    recipe.json files), and RETIRED settings dropped where inert (kept where they acted: it then matches no
    recipe)."""
    predated = {"patch": 2,  # a file without the key was trained on patches of 2
                "shape_weight": 0.0,  # without shape weighting
                "shapes": list(SHAPES),  # in the classic shapes
                "vae_from": None, "warmup": 0,  # with its own VAE, the cosine from full rate
                "init_from": None, "amp": False, "device_noise": False}  # from scratch, fp32, CPU noise
    inert = not old.get("tune_steps")
    return {**predated, **{k: v for k, v in old.items() if not (inert and k in RETIRED)}}
