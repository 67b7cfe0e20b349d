"""ditflow: motion transfer with video diffusion transformers (DiTFlow) on Hugging Face diffusers
(the model families are in ditflow.backbones).

    import ditflow
    amf = ditflow.extract("ref.mp4", ditflow.ExtractConfig(model="5b"))
    gen = ditflow.guide(amf.hash, ditflow.GuideConfig(prompt="a leopard running up a snowy hill"))
    new = ditflow.inject(gen.hash, ditflow.InjectConfig(prompt="a polar bear ..."))   # emb-mode runs
    gen.frames  # uint8 [T, H, W, 3]

Heavy imports (torch, diffusers) happen on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "extract": "ditflow.stages", "guide": "ditflow.stages", "inject": "ditflow.stages", "InjectConfig": "ditflow.config",
    "ExtractConfig": "ditflow.config", "GuideConfig": "ditflow.config", "RuntimeOptions": "ditflow.config",
    "Store": "ditflow.store", "AmfArtifact": "ditflow.artifacts", "GenArtifact": "ditflow.artifacts",
    "attention_motion_flow": "ditflow.amf", "evaluate": "ditflow.eval", "Evaluator": "ditflow.eval",
    "EvalSettings": "ditflow.eval", "keep_loaded": "ditflow.backbones.loaded", "motion_fidelity": "ditflow.eval.motion", "read_video": "ditflow.video", "write_video": "ditflow.video",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ditflow' has no attribute {name!r}")
