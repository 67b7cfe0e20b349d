"""The scale benchmark's models: every preset's released configuration (`ditflow.released`) built with random weights.

Time and memory do not depend on weight values, and nothing is downloaded. The text encoders keep their real width
but one layer (T5-XXL, UMT5-XXL, Qwen2.5-VL, Gemma 3 and ByT5 in full weigh 9.5 to 24 GB: add the planner's
figure for them when reading a GPU row without offload); `quick` keeps `QUICK_BLOCKS` transformer blocks per
expert. The tokenizers are small ones of the same kind (every prompt is padded to the text length).
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

QUICK_BLOCKS = 2
# preset -> (pixel size, frame counts): the model cards' (Wan 2.1 and CogVideoX 1.0 also at the paper's 24/25 and 49)
MODELS = {
    "2b": ((480, 720), (24, 49)), "5b": ((480, 720), (24, 49)), "1.5-5b": ((768, 1360), (81,)),
    "wan-1.3b": ((480, 832), (25, 49, 81)), "wan-14b": ((480, 832), (25, 49, 81)), "wan2.2-a14b": ((480, 832), (81,)),
    "wan2.2-ti2v-5b": ((704, 1280), (121,)),
    "hunyuan1.5-480p": ((480, 848), (121,)), "hunyuan1.5-720p": ((720, 1280), (121,)), "ltx2": ((512, 768), (121,)),
}
# --quick's default: HunyuanVideo 1.5 and LTX-2 at 2 blocks still write 10 and 20 GB of fp32 weights (their VAEs, and
# the text encoders' vocabularies at the real width): name them with --models to include them
QUICK_MODELS = ("2b", "5b", "1.5-5b", "wan-1.3b", "wan-14b", "wan2.2-a14b", "wan2.2-ti2v-5b")
QUICK_SIZE = {"wan2.2-ti2v-5b": (32, 64), "ltx2": (64, 96)}  # 16x VAE and patch 2; LTX-2's decoder takes >= 64
QUICK_FRAMES = {"hunyuan1.5-480p": 9, "hunyuan1.5-720p": 9, "ltx2": 9}


def _one_layer(cfg: dict) -> dict:
    """A text encoder's config at its real width with one layer."""
    cfg = copy.deepcopy(cfg)
    for key in ("num_layers", "num_hidden_layers"):
        if key in cfg:
            cfg[key] = 1
    for sub in ("text_config", "vision_config"):
        if isinstance(cfg.get(sub), dict):
            cfg[sub] = _one_layer(cfg[sub])
    if "num_decoder_layers" in cfg:
        cfg["num_decoder_layers"] = 1
    return cfg


def configs_for(name: str, quick: bool) -> dict:
    """The preset's released configs, text encoders at one layer and (quick) the transformers at QUICK_BLOCKS."""
    from ditflow.released import released_configs

    configs = copy.deepcopy(released_configs()[name])
    for part in ("text_encoder", "text_encoder_2"):
        if part in configs:
            configs[part] = _one_layer(configs[part])
    if quick:
        for part in ("transformer", "transformer_2"):
            if part in configs:
                configs[part]["num_layers"] = QUICK_BLOCKS
    return configs


def build_folder(name: str, folder: Path, quick: bool) -> Path:
    """The preset's pipeline with random weights, saved to `folder` (once), with a ditflow.json of its settings."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch

    from ditflow.backbones import PRESETS
    from ditflow.backbones.registry import adapter_for
    from ditflow.plan.fake import build_component, config_folder

    pre = PRESETS[name]
    dtype = torch.float32 if quick else getattr(torch, pre.dtype)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        configs = config_folder(name, configs_for(name, quick), Path(tmp))
        index = json.loads((configs / "model_index.json").read_text())
        parts = {part: None if None in spec[:2] else build_component(configs, part, spec[0], spec[1], init=True)
                 for part, spec in index.items() if isinstance(spec, list)}
        extra = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
        pipe = adapter_for(configs).pipeline_type()(**parts, **extra)
    pipe.to(dtype)
    pipe.save_pretrained(folder)
    size, frames = MODELS[name]
    height, width = QUICK_SIZE.get(name, (32, 48)) if quick else size
    settings = {"guidance_blocks": [0] if quick else list(pre.guidance_blocks), "height": height, "width": width,
                "dtype": str(dtype).split(".")[-1], **pre.family, "cfg": pre.cfg, "negative_prompt": pre.negative_prompt,
                "steps": pre.steps, "guidance_range": list(pre.guidance_range),
                "lr": {k: list(v) for k, v in pre.lr.items()}, "opt_mode": "latent"}
    (folder / "ditflow.json").write_text(json.dumps(settings, indent=1))
    return folder
