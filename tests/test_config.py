import json

import pytest

from ditflow.backbones import ALIASES, PRESETS, resolve_model
from ditflow.backbones.cogvideox import preset_for
from ditflow.config import ExtractConfig, GuideConfig
from ditflow.config_file import apply_overrides
from ditflow.errors import InputError


def test_paper_presets():
    five, two = PRESETS["5b"], PRESETS[ALIASES["THUDM/CogVideoX-2b"]]
    assert five.guidance_blocks == (20,) and five.dtype == "bfloat16" and five.family["scheduler"] == "dpm"
    assert two.guidance_blocks == (15,) and two.dtype == "float16" and two.family["scheduler"] == "ddim"
    assert ExtractConfig().resolve(five).frames == 24
    g = GuideConfig(prompt="x").resolve(five)
    assert g.lr == (0.002, 0.001) and g.guidance_range == (50, 40) and g.steps == 50 and g.cfg == 7.0


def test_local_copy_of_5b_gets_the_5b_preset():
    p = preset_for("/models/cogvideox-5b", {"num_layers": 42, "use_rotary_positional_embeddings": True, "num_attention_heads": 48})
    assert p.guidance_blocks == (20,) and p.dtype == "bfloat16" and p.source == "/models/cogvideox-5b"


def test_folder_defaults_file(tiny_rope, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_rope, folder)
    derived = resolve_model(str(folder)).preset
    assert derived.guidance_blocks == (1,) and (derived.height, derived.width) == (32, 48)
    (folder / "ditflow.json").write_text(json.dumps({"guidance_blocks": [0], "cfg": 2.5, "frames": 9}))
    p = resolve_model(str(folder)).preset
    assert p.guidance_blocks == (0,) and p.cfg == 2.5 and p.frames == 9
    g = GuideConfig(prompt="x").resolve(p)
    assert g.opt_mode == "latent" and g.negative_prompt == "" and g.injection is True
    (folder / "ditflow.json").write_text(json.dumps({"opt_mode": "emb", "negative_prompt": "blurry",
                                                     "loss_weighting": "confidence", "injection": False}))
    g = GuideConfig(prompt="x").resolve(resolve_model(str(folder)).preset)
    assert (g.opt_mode, g.negative_prompt, g.loss_weighting, g.injection) == ("emb", "blurry", "confidence", False)
    g = GuideConfig(prompt="x", opt_mode="latent", injection=True).resolve(resolve_model(str(folder)).preset)  # flags still win
    assert g.opt_mode == "latent" and g.injection is True
    (folder / "ditflow.json").write_text(json.dumps({"nonsense": 1}))
    with pytest.raises(InputError):
        _ = resolve_model(str(folder)).preset


def test_overrides_layer_in_order():
    cfg = apply_overrides(GuideConfig(), {"cfg": 5.0, "lr": [0.1, 0.2]}, {"cfg": 6.0, "seed": None})
    assert cfg.cfg == 6.0 and cfg.lr == (0.1, 0.2) and cfg.seed == 1
    with pytest.raises(InputError):
        apply_overrides(GuideConfig(), {"learning_rate": 1})


def test_a_folder_without_preset_runs_its_own_pipeline():
    """Its own scheduler, plain CFG at the pipeline's 6, no negative prompt: what from_pretrained(folder) does."""
    g = GuideConfig(prompt="x").resolve(preset_for("/my/model", {"num_layers": 8}))
    assert (g.family, g.cfg, g.negative_prompt) == ({"scheduler": None, "dynamic_cfg": False}, 6.0, "")


def test_emb_mode_takes_its_own_lr_default():
    p = preset_for("toy-like", {"num_layers": 8}, folder_defaults={"lr": {"latent": [0.015, 0.005], "emb": [0.03, 0.01]}})
    assert GuideConfig(prompt="x").resolve(p).lr == (0.015, 0.005)  # latent mode, the preset's default
    assert GuideConfig(prompt="x", opt_mode="emb").resolve(p).lr == (0.03, 0.01)
    assert GuideConfig(prompt="x", opt_mode="emb", lr=(0.1, 0.1)).resolve(p).lr == (0.1, 0.1)  # a flag still wins
    # the paper's presets: both modes share one lr
    assert GuideConfig(prompt="x", opt_mode="emb").resolve(PRESETS["5b"]).lr == (0.002, 0.001)


def test_a_family_setting_in_a_config_layer_goes_into_family():
    cfg = apply_overrides(GuideConfig(), {"scheduler": "ddim"}, {"dynamic-cfg": True, "cfg": 5.0})
    assert cfg.family == {"scheduler": "ddim", "dynamic_cfg": True} and cfg.cfg == 5.0
    with pytest.raises(InputError, match="--scheduler must be a string"):
        apply_overrides(GuideConfig(), {"scheduler": 3})


def test_the_family_adapter_checks_its_settings_rules():
    from ditflow.backbones.cogvideox import CogVideoXBackbone

    with pytest.raises(InputError, match="--scheduler must be one of 'dpm', 'ddim'"):
        CogVideoXBackbone.check_guide(GuideConfig(prompt="x", family={"scheduler": "euler"}))
    with pytest.raises(InputError, match="--dynamic-cfg schedules the CFG scale"):
        CogVideoXBackbone.check_guide(GuideConfig(prompt="x", cfg=1.0, family={"dynamic_cfg": True}))
    CogVideoXBackbone.check_guide(GuideConfig(prompt="x", cfg=1.0, family={"dynamic_cfg": False}))
