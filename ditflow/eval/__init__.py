"""Scoring a generated video against its reference: CLIP text alignment, motion fidelity (and masked), temporal
consistency and Fréchet trajectory distance.

`Evaluator` loads each model once (so a batch reuses them) and scores one (video, reference, prompt)
triple; a metric whose weights are missing is reported as unavailable with the reason while the other
metrics are still computed. `resolve_frames` turns a CLI argument (a video path or an artifact hash)
into frames. torch/open_clip/cv2 are imported only when a metric needs them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactNotFound, DitflowError, InputError, ModelUnavailable
from .settings import DEFAULT_METRICS, MAX_GRID, METRICS, EvalSettings

if TYPE_CHECKING:  # numpy and the video readers load with the first video, not with the CLI's --help
    import numpy as np

__all__ = ["EvalSettings", "Evaluator", "MAX_GRID", "METRICS", "Source", "default_prompt", "default_reference", "evaluate",
           "few_tracks_warning", "frames_note", "parse_metrics", "resolve_frames"]
RESULT_KEYS = {"clip": "clip_score", "mf": "motion_fidelity", "tc": "temporal_consistency", "ftd": "ftd"}
# A motion fidelity from a handful of tracks (a flat, textureless generation: the toy backbone's videos keep
# 2 of 3,025 LK points) is the best match of those few and says little: warn below either bound.
MIN_TRACKS = 10
MIN_TRACK_FRACTION = 0.01  # of the grid's points
_HEX = re.compile(r"^[0-9a-fA-F]{6,64}$")


@dataclass
class Source:
    """Frames of one input, with where they came from: a path, or `<kind>:<hash12>`."""

    frames: np.ndarray
    label: str
    artifact: Any = None  # the GenArtifact/AmfArtifact when the input was a hash


def resolve_frames(arg: str | os.PathLike, store=None, *, base: Path | None = None, max_frames: int | None = None) -> Source:
    """Frames of a video file/folder (relative paths against `base` when given) or, when `arg` is not an
    existing path but looks like a hash, of an artifact in `store`: a gen artifact's generated frames, an
    amf artifact's reference frames (resized to the model size)."""
    text = str(arg)
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.exists():
        from ..video import read_video

        return Source(read_video(path, max_frames), str(arg))
    if store is not None and _HEX.match(text):
        from ..artifacts import load

        try:
            art = load(store, text)
        except ArtifactNotFound as e:
            raise InputError(f"{text}: no such file or folder, and {e}")
        if art.kind not in ("gen", "amf"):
            raise InputError(f"artifact {art.hash[:12]} is a '{art.kind}' artifact; give a gen or amf artifact, or a video")
        frames = art.frames
        return Source(frames[:max_frames] if max_frames else frames, f"{art.kind}:{art.hash[:12]}", art)
    raise InputError(f"video not found: {text} (not a file or folder{', nor an artifact hash' if store is not None else ''})")


def default_reference(video: Source) -> str | None:
    """The amf artifact a gen artifact was guided by (its first parent), if any."""
    if video.artifact is not None and video.artifact.kind == "gen":
        parents = video.artifact.meta.get("parents") or []
        return parents[0] if parents else None
    return None


def default_prompt(video: Source) -> str | None:
    if video.artifact is not None and video.artifact.kind == "gen":
        return (video.artifact.meta.get("settings") or {}).get("prompt")
    return None


ALIASES = {"clip": "clip", "clip_score": "clip", "iq": "clip", "mf": "mf", "motion_fidelity": "mf", "tc": "tc",
           "temporal_consistency": "tc", "ftd": "ftd", "frechet_trajectory_distance": "ftd"}


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """"clip,mf" -> ("clip", "mf"); the result keys (clip_score, motion_fidelity, temporal_consistency) are accepted too."""
    names = [n.strip().lower() for n in (text or ",".join(DEFAULT_METRICS)).split(",") if n.strip()]
    bad = [n for n in names if n not in ALIASES]
    if bad or not names:
        raise InputError(f"unknown metric(s) {', '.join(bad) or '(none)'}: use some of {', '.join(METRICS)} (e.g. clip,mf)")
    return tuple(dict.fromkeys(ALIASES[n] for n in names))


@dataclass
class Evaluator:
    settings: EvalSettings = field(default_factory=EvalSettings)
    notes: list[str] = field(default_factory=list)  # e.g. why auto fell back to lk
    _clip: Any = field(default=None, init=False, repr=False)
    _tracker: Any = field(default=None, init=False, repr=False)
    _dino: Any = field(default=None, init=False, repr=False)
    _missing: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # clip/tracker/dino -> why it cannot load (asked once)

    def __post_init__(self) -> None:
        self.settings.validate()

    def clip(self):
        if self._clip is None and "clip" not in self._missing:
            from .clip import load_clip

            try:
                self._clip = load_clip(self.settings.clip_model, self.settings.clip_pretrained, self.settings.device)
            except ModelUnavailable as e:
                self._missing["clip"] = str(e)
        return self._clip

    def dino(self):
        if self._dino is None and "dino" not in self._missing:
            from .consistency import load_dino

            try:
                self._dino = load_dino(self.settings.dino_model, self.settings.device)
            except ModelUnavailable as e:
                self._missing["dino"] = str(e)
        return self._dino

    def tracker(self):
        if self._tracker is None and "tracker" not in self._missing:
            from .trackers import get_tracker

            s = self.settings
            try:
                self._tracker, fallback = get_tracker(s.tracker, grid_size=s.grid_size, cotracker_repo=s.cotracker_repo,
                                                      cotracker_checkpoint=s.cotracker_checkpoint, device=s.device)
                if fallback:
                    self.notes.append(f"using the built-in lk tracker: {fallback}")
            except ModelUnavailable as e:
                self._missing["tracker"] = str(e)
        return self._tracker

    def score(self, video: np.ndarray, reference: np.ndarray | None, prompt: str | None) -> dict[str, Any]:
        """Scores of video uint8 [T, H, W, 3] against reference [T', H', W', 3] and the prompt:
        {"clip_score", "motion_fidelity", "tracker", "mf_variant", "warnings", ...} (and "temporal_consistency",
        "ftd", "mf_masked"... when asked), plus "unavailable": {metric: why} for each asked-for metric that could
        not be computed. "warnings" lists reasons to doubt a computed score (motion fidelity from few tracks:
        `few_tracks_warning`)."""
        asked = self.settings.metrics
        out: dict[str, Any] = {"clip_score": None, "motion_fidelity": None, "tracker": None,
                               "mf_variant": self.settings.mf_variant, "warnings": []}
        unavailable: dict[str, str] = {}
        if "clip" in asked:
            out.update(self._clip_score(video, prompt, unavailable))
        if "tc" in asked:
            out.update(self._temporal_consistency(video, unavailable))
        pair = None
        if {"mf", "ftd"} & set(asked):
            pair = self._pair(video, reference, unavailable)
        if "mf" in asked and pair is not None:
            out.update(self._motion_fidelity(*pair, unavailable))
        if "ftd" in asked and pair is not None:
            out.update(self._ftd(*pair, unavailable))
        if pair is not None and len(video) != len(reference):
            out["warnings"] = [frames_note(len(video), len(reference)), *out["warnings"]]
        if self.settings.mask is not None and not {"mf", "ftd"} & set(asked):
            out["warnings"].append("--mask is used by mf and ftd only, and neither was asked for")
        if unavailable:
            out["unavailable"] = unavailable
        return out

    def _clip_score(self, video: np.ndarray, prompt: str | None, unavailable: dict[str, str]) -> dict[str, Any]:
        if not prompt:
            unavailable["clip_score"] = "no prompt given (--prompt)"
            return {}
        scorer = self.clip()
        if scorer is None:
            unavailable["clip_score"] = self._missing["clip"]
            return {}
        return {"clip_score": scorer.score(video, prompt), "clip_model": scorer.name}

    def _temporal_consistency(self, video: np.ndarray, unavailable: dict[str, str]) -> dict[str, Any]:
        from .consistency import consistency_with_first, temporal_consistency

        out: dict[str, Any] = {"temporal_consistency": None, "temporal_consistency_first": None}
        if len(video) < 2:
            unavailable["temporal_consistency"] = "the video has one frame"
            return out
        which = self.settings.tc_model
        embedder = self.clip() if which == "clip" else self.dino()
        if embedder is None:
            unavailable["temporal_consistency"] = self._missing[which]
            return out
        emb = embedder.image_embeddings(video)
        emb = emb.cpu().numpy() if hasattr(emb, "cpu") else emb  # CLIP gives a torch tensor, DINO numpy
        return {"temporal_consistency": temporal_consistency(emb), "temporal_consistency_first": consistency_with_first(emb),
                "tc_model": embedder.name}

    def _pair(self, video: np.ndarray, reference: np.ndarray | None, unavailable: dict[str, str]):
        """(generated, reference resized to its size, the reference's first-frame mask at that size or None, tracker),
        cut to the frames both have; None (with the reasons in `unavailable`) when motion cannot be compared."""
        from ..video import resize_frames

        keys = [RESULT_KEYS[m] for m in ("mf", "ftd") if m in self.settings.metrics]
        why = "no reference video given (--reference)" if reference is None else None
        tracker = None if why else self.tracker()
        if why is None and tracker is None:
            why = self._missing["tracker"]
        if why is not None:
            unavailable.update(dict.fromkeys(keys, why))
            return None
        t = min(len(video), len(reference))
        if t < 2:
            raise InputError("motion fidelity and FTD need at least 2 frames in both videos")
        # A reference longer than the generation (a whole clip against a 49-frame run) is common and its first
        # frames are the ones the generation followed: compared, with a note (not a refusal).
        gen = video[:t]
        ref = resize_frames(reference[:t], *gen.shape[1:3])  # same size, so both are tracked on the same grid
        mask = None
        if self.settings.mask is not None:
            from .mask import load_mask, resize_mask

            mask = resize_mask(load_mask(self.settings.mask, *reference.shape[1:3]), *gen.shape[1:3])
        return gen, ref, mask, tracker

    def _motion_fidelity(self, gen: np.ndarray, ref: np.ndarray, mask: np.ndarray | None, tracker,
                         unavailable: dict[str, str]) -> dict[str, Any]:
        from .motion import motion_fidelity

        gen_tracks, _ = tracker.track(gen)  # visibility unused: every track counts, as in the SMM/DiTFlow scripts
        ref_tracks, _ = tracker.track(ref)
        grid = self.settings.grid_size ** 2
        counts = {"video": len(gen_tracks), "reference": len(ref_tracks)}
        out: dict[str, Any] = {"tracker": tracker.name, "frames": len(gen), "tracks": {**counts, "grid": grid}}
        if mask is not None:
            out["mf_masked"] = None
            out.update(masked_motion_fidelity(gen_tracks, ref_tracks, mask, self.settings.mf_variant, unavailable))
        if min(counts.values()) == 0:
            which = "generated video" if counts["video"] == 0 else "reference"
            unavailable["motion_fidelity"] = f"no point could be tracked through the whole {which} (textureless?)"
            return out
        out["motion_fidelity"] = motion_fidelity(gen_tracks, ref_tracks, self.settings.mf_variant)
        out["warnings"] = [w for which, n in (("generated video", counts["video"]), ("reference", counts["reference"]))
                           if (w := few_tracks_warning(n, grid, which))]
        return out

    def _ftd(self, gen: np.ndarray, ref: np.ndarray, mask: np.ndarray | None, tracker,
             unavailable: dict[str, str]) -> dict[str, Any]:
        from .ftd import ftd_scores
        from .mask import inside
        from .trackers import grid_margin, grid_points

        h, w = gen.shape[1:3]
        points = grid_points(h, w, self.settings.grid_size, grid_margin(h, w))  # [N, 2] of frame 0, shared by both
        ref_tracks, ref_kept = tracker.track_points(ref, points)
        gen_tracks, gen_kept = tracker.track_points(gen, points)
        foreground = inside(points, mask) if mask is not None else None
        scores = ftd_scores(ref_tracks, gen_tracks, ref_kept & gen_kept, (h, w), foreground)
        out = {"tracker": tracker.name, "ftd_points": scores.pop("points"), **scores}
        for key, side in (("ftd", "the whole frame"), ("ftd_foreground", "the mask"), ("ftd_background", "outside the mask")):
            if key in out and out[key] is None:
                unavailable[key] = f"no grid point in {side} was tracked through both videos"
        return out

    def nothing_scored(self, result: dict[str, Any]) -> DitflowError | None:
        """The error for a result in which no asked-for metric has a value (None when one has): one line
        with every reason; ModelUnavailable when missing weights are among them, else InputError."""
        asked = [RESULT_KEYS[m] for m in self.settings.metrics]
        if any(result.get(k) is not None for k in asked):
            return None
        reasons = result.get("unavailable") or {}
        text = "; ".join(f"{k}: {reasons.get(k, 'not computed')}" for k in asked)
        weightless = set(self._missing.values())
        kind = ModelUnavailable if any(reasons.get(k) in weightless for k in asked) else InputError
        return kind(f"nothing to score: {text}")


def masked_motion_fidelity(gen_tracks: np.ndarray, ref_tracks: np.ndarray, mask: np.ndarray, variant: str,
                           unavailable: dict[str, str]) -> dict[str, Any]:
    """MF of the tracks that start (frame 0) on the reference's mask bool [H, W], in both videos (DeT's MTBench
    masked MF): tracks [N, T, 2], [M, T, 2] -> {"mf_masked", "tracks_in_mask"}."""
    from .mask import inside
    from .motion import motion_fidelity

    gen_in, ref_in = gen_tracks[inside(gen_tracks[:, 0], mask)], ref_tracks[inside(ref_tracks[:, 0], mask)]
    out: dict[str, Any] = {"tracks_in_mask": {"video": len(gen_in), "reference": len(ref_in)}}
    if len(gen_in) == 0 or len(ref_in) == 0:
        unavailable["mf_masked"] = "no tracked grid point starts inside the mask"
        return out
    out["mf_masked"] = motion_fidelity(gen_in, ref_in, variant)
    return out


def frames_note(video: int, reference: int) -> str:
    """Motion fidelity compared only the frames both videos have."""
    return (f"the generated video has {video} frames and the reference {reference}: motion fidelity compares "
            f"the first {min(video, reference)} of each")


def few_tracks_warning(n: int, grid: int, which: str) -> str | None:
    """A warning when motion fidelity rests on fewer than MIN_TRACKS tracks or MIN_TRACK_FRACTION of the grid."""
    if n >= MIN_TRACKS and n >= MIN_TRACK_FRACTION * grid:
        return None
    return (f"motion fidelity rests on only {n} of {grid} grid points tracked through the {which} "
            f"(fewer than {MIN_TRACKS} or {MIN_TRACK_FRACTION:.0%} of the grid): treat it as unreliable")


def evaluate(evaluator: Evaluator, video: str, reference: str | None = None, prompt: str | None = None, *,
             store=None, base: Path | None = None, max_frames: int | None = None) -> dict[str, Any]:
    """Score one generated video (path or gen hash) against its reference (path or amf hash) and prompt.

    For a gen artifact, the reference defaults to the amf artifact it was guided by and the prompt to the
    one it was generated with. The reference is only read when motion fidelity or FTD is asked for. Raises when
    no asked-for metric could be computed (see `Evaluator.nothing_scored`).
    """
    v = resolve_frames(video, store, base=base, max_frames=max_frames)
    reference = reference or default_reference(v)
    prompt = prompt or default_prompt(v)
    r = None
    if reference and {"mf", "ftd"} & set(evaluator.settings.metrics):
        r = resolve_frames(reference, store, base=base, max_frames=max_frames)
    scores = evaluator.score(v.frames, r.frames if r is not None else None, prompt)
    error = evaluator.nothing_scored(scores)
    if error is not None:
        raise error
    return {"video": v.label, "reference": r.label if r is not None else reference, "prompt": prompt, **scores}
