"""One batch row: extract -> guide (or inject) -> eval, each a cache look-up first.

The cache is the queue: the row's evaluation is stored too (a `score` object), and the seconds and peak memory
the generation took are in its gen artifact's metadata, so a rerun of a finished row reads three objects and
computes nothing, and a killed batch resumes at the first row whose artifacts are missing. Errors never escape:
a row that fails comes back with status "failed" and its one-line error.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..config import ExtractConfig, GuideConfig, InjectConfig, RuntimeOptions
from ..errors import DitflowError
from ..eval import EvalSettings
from .manifest import Run
from .results import SCORE_COLUMNS
from .setups import INJECT, INJECT_SOURCE, all_setups, guide_config

if TYPE_CHECKING:
    from ..backbones import ResolvedModel

SCORES = "scores.json"


@dataclass(frozen=True)
class BatchSettings:
    """What every row of a batch shares (picklable: it travels to worker processes and Ray actors)."""

    cache: str  # absolute: every worker, on every node, must see the same folder
    extract: ExtractConfig = ExtractConfig()
    guide: GuideConfig = GuideConfig()
    eval: EvalSettings = field(default_factory=EvalSettings)
    runtime: RuntimeOptions = RuntimeOptions(quiet=True)
    setups: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom setups by name
    model: "ResolvedModel | None" = None  # extract.model, resolved once by `preflight`

    def on_device(self, device: str | None) -> "BatchSettings":
        """The settings of a worker pinned to `device` (None: the default, cuda when visible)."""
        if device is None:
            return self
        ev = replace(self.eval, device="cpu" if device == "cpu" else device)
        return replace(self, runtime=replace(self.runtime, device=device), eval=ev)


_evaluators: dict[str, Any] = {}  # one per process and settings: CLIP and the tracker load once


def _evaluator(settings: EvalSettings):
    from ..eval import Evaluator

    key = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    if key not in _evaluators:
        _evaluators[key] = Evaluator(settings)
    return _evaluators[key]


def base_result(run: Run, model: str, cache: str | None = None) -> dict[str, Any]:
    return {"cache": cache, "row": run.row, "video": run.video, "prompt": run.prompt, "setup": run.setup, "seed": run.seed,
            "frame_range": ",".join(map(str, run.frame_range)) if run.frame_range else None, "model": model,
            "amf": None, "gen": None, **dict.fromkeys(SCORE_COLUMNS), "seconds": None, "peak_memory_mb": None,
            "status": "failed", "error": None, "cached": False, "notes": None, "image": run.image,
            "image_fit": run.image_fit if run.image else None, "image_digest": None}


def run_row(run: Run, s: BatchSettings) -> dict[str, Any]:
    """The result of one row (see `results.COLUMNS`); never raises for a failing row."""
    out = base_result(run, s.extract.model, s.cache)
    if run.error:
        return {**out, "error": run.error}
    try:
        out.update(_compute(run, s))
        out["status"] = "ok"
    except DitflowError as e:
        out["error"] = _line(str(e))
    except Exception as e:  # one broken row must not lose the rest of a long batch
        out["error"] = _line(f"{type(e).__name__}: {e}")
    return out


def _line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _compute(run: Run, s: BatchSettings) -> dict[str, Any]:
    from ..stages import extract, guide, inject
    from ..store import Store

    store = Store(s.cache)
    at = dict(runtime=s.runtime, store=store, resolved=s.model)
    amf = extract(run.path, replace(s.extract, frame_range=run.frame_range), **at)
    picture = dict(image=run.image_path, image_fit=run.image_fit)
    if run.setup == INJECT:  # the replayed run animates this row's picture; inject animates that run's again
        source = guide(amf.hash, guide_config(s.guide, all_setups(s.setups)[INJECT_SOURCE], run.inject_from, run.seed),
                       **picture, **at)
        gen = inject(source.hash, InjectConfig(prompt=run.prompt), **at)
    else:
        cfg = guide_config(s.guide, all_setups(s.setups)[run.setup], run.prompt, run.seed)
        gen = guide(amf.hash, cfg, **picture, **at)
    # the generation's, recorded when it was made (a hit costs none; a gen from before the peak was recorded has none)
    seconds = (gen.meta.get("seconds") or {}).get("total")
    peak = (gen.meta.get("peak_memory") or {}).get("mb")
    return {"amf": amf.hash, "gen": gen.hash, "seconds": seconds, "peak_memory_mb": peak, "image_digest": gen.inputs.get("image"),
            **score(store, amf, gen, run.prompt, s.eval)}


# the evaluation settings a score was hashed with before the peers' metrics: a setting added since is hashed only
# when it differs from its default, so a batch scored before keeps its score objects (and is not scored again)
FIRST_SETTINGS = ("metrics", "clip_model", "clip_pretrained", "tracker", "mf_variant", "grid_size", "cotracker_repo",
                  "cotracker_checkpoint")


def score_inputs(amf_hash: str, gen_hash: str, prompt: str, settings: EvalSettings) -> dict[str, Any]:
    """What a row's scores depend on (the device does not)."""
    defaults = EvalSettings()
    ev = {k: v for k, v in dataclasses.asdict(settings).items()
          if k != "device" and (k in FIRST_SETTINGS or v != getattr(defaults, k))}
    return {"amf": amf_hash, "gen": gen_hash, "prompt": prompt, "eval": json.loads(json.dumps(ev))}


def score(store, amf, gen, prompt: str, settings: EvalSettings) -> dict[str, Any]:
    """The row's scores from its stored evaluation (`cached`: the whole row was a hit), or computed and stored.
    A score the evaluation did not compute (not asked, or an evaluation stored before the metric existed) is None."""
    from ..store import content_key

    inputs = score_inputs(amf.hash, gen.hash, prompt, settings)
    h = content_key("score", inputs)
    if store.exists(h):
        return {**json.loads((store.info(h).path / SCORES).read_text()), "cached": True}
    scores = _evaluator(settings).score(gen.frames, amf.frames, prompt)
    notes = [f"{k}: {v}" for k, v in (scores.get("unavailable") or {}).items()] + list(scores.get("warnings") or [])
    record = {**{k: scores.get(k) for k in SCORE_COLUMNS}, "notes": "; ".join(notes) or None}
    with store.writer(h, "score", inputs, parents=[gen.hash, amf.hash]) as folder:
        (folder / SCORES).write_text(json.dumps(record))
    return {**record, "cached": False}
