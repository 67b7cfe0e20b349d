"""The settings of an evaluation and their rules, written once: the CLI's help and `ditflow eval`'s checks
read them, and so does the Python API (`Evaluator` validates its settings). numpy-free, so the CLI can
import it for --help without loading any metric."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import check_device, check_rules, rule
from ..errors import InputError

METRICS = ("clip", "mf", "tc", "ftd")
DEFAULT_METRICS = ("clip", "mf")  # tc and ftd are asked for by name: they cost a second model / a second tracking
TC_MODELS = ("clip", "dino")
DEFAULT_DINO = "facebook/dino-vitb16"  # DeT's MTBench temporal consistency
TRACKERS = ("auto", "lk", "cotracker")
VARIANTS = ("symmetric", "ditflow")
GRID_SIZE = 55  # the DiTFlow/SMM evaluation tracks a 55×55 grid
MAX_GRID = 100  # 10,000 tracks: their pairwise similarities take 0.8 GB (memory grows as N**4)


@dataclass
class EvalSettings:
    """How to score. Every field is part of a batch row's score hash except the device."""

    metrics: tuple[str, ...] = field(default=DEFAULT_METRICS, metadata=rule(
        "Comma-separated: clip (text alignment), mf (motion fidelity), tc (temporal consistency), ftd (Fréchet "
        "trajectory distance)."))
    clip_model: str = field(default="ViT-B-32", metadata=rule("open_clip model name."))
    clip_pretrained: str | None = field(default="openai", metadata=rule(
        "open_clip pretrained tag (read from the local caches only) or a checkpoint file."))
    tracker: str = field(default="auto", metadata=rule(
        "auto (cotracker if available, else lk), lk (built-in, no weights) or cotracker.", choices=TRACKERS))
    mf_variant: str = field(default="symmetric", metadata=rule(
        "symmetric (SMM paper) or ditflow (the DiTFlow paper's evaluation script).", choices=VARIANTS))
    grid_size: int = field(default=GRID_SIZE, metadata=rule(
        f"Track a grid of N×N points of the first frame (2 to {MAX_GRID}).", ge=2, le=MAX_GRID))
    cotracker_repo: str | None = field(default=None, metadata=rule(
        "Local checkout of facebookresearch/co-tracker. [default: $DITFLOW_COTRACKER_REPO, else the torch hub cache]"))
    cotracker_checkpoint: str | None = field(default=None, metadata=rule(
        "CoTracker3 offline checkpoint, scaled_offline.pth. [default: $DITFLOW_COTRACKER_CHECKPOINT, else the torch "
        "hub cache]"))
    tc_model: str = field(default="clip", metadata=rule(
        "Image embeddings of temporal consistency: clip (the CLIP model above, as FlowMotion/FastVMT) or dino "
        "(--dino-model, as DeT's MTBench).", choices=TC_MODELS))
    dino_model: str = field(default=DEFAULT_DINO, metadata=rule(
        "DINO/DINOv2 for --tc-model dino: a Hugging Face repo id read from the local cache only, or a local folder."))
    mask: str | None = field(default=None, metadata=rule(
        "The reference's foreground: a mask video, a folder of per-frame masks, an image, or a box x0,y0,x1,y1 "
        "(reference pixels, x1 y1 exclusive); its first frame restricts MF to the grid points inside (mf_masked) "
        "and splits FTD into foreground and background."))
    device: str = field(default="cpu", metadata=rule("Device for CLIP and CoTracker: cpu, cuda, cuda:1..."))

    def validate(self) -> None:
        """Refuse what `ditflow eval` refuses, before any model loads or video is read (InputError)."""
        if type(self.grid_size) is int and not 2 <= self.grid_size <= MAX_GRID:
            raise InputError(f"--grid-size must be between 2 and {MAX_GRID} (N x N points; the paper's is "
                             f"{GRID_SIZE}), got {self.grid_size}")
        check_rules(self)
        if not self.metrics or set(self.metrics) - set(METRICS):
            raise InputError(f"--metrics must be some of {', '.join(METRICS)}, got {','.join(self.metrics) or '(none)'}")
        if self.mask is not None:
            from .mask import check_mask

            check_mask(self.mask)
        check_device(self.device)
