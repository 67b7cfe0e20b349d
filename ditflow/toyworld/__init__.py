"""The synthetic world the toy CogVideoX is trained on: simple shapes moving along known paths."""
from .world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Clip, make_clip

__all__ = ["BACKGROUNDS", "COLOURS", "MOTIONS", "SHAPES", "Clip", "make_clip"]
