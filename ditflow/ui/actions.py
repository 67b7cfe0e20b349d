"""What the page's buttons do, without gradio: each is a call of the library the CLI calls (stages, store, eval,
batch report) with the settings the CLI's parser made of the form. Errors stay the library's (one line each);
`message` words any of them as the CLI's `error: ...` line."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DitflowError, InputError
from ..progress import listen
from ..store import Store
from . import forms

if TYPE_CHECKING:
    import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".gif", ".webm", ".avi", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
RESULT_SUFFIXES = (".json", ".csv")
UPLOAD_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES + RESULT_SUFFIXES  # what the page's upload route keeps


class Cancelled(Exception):
    """The page's Cancel button: raised inside the stage at its next progress update, so it publishes nothing."""


def message(e: BaseException) -> str:
    """The CLI's line for an error (`ditflow.cli.app.main` prints the same)."""
    if isinstance(e, Cancelled):
        return "error: cancelled; nothing was written (a stage publishes its artifact only when it completes)"
    if isinstance(e, DitflowError):
        return f"error: {e}"
    first = (str(e).strip().splitlines() or [""])[0]
    return f"error: internal error: {type(e).__name__}: {first} (set DITFLOW_DEBUG=1 for a traceback)"


@dataclass
class Runner:
    """The page's one cache, model and work folder; `cancels` holds each browser session's cancel flag."""

    store: Store
    model: str
    work: Path
    device: str | None = None
    cancels: dict[str, threading.Event] = field(default_factory=dict)

    def run(self, session: str, stage: Callable[[], Any], report: Callable[[float, str], None]) -> Any:
        """`stage()` with its progress sent to `report(fraction, text)` and the session's Cancel honoured."""
        cancel = self.cancels.setdefault(session, threading.Event())
        cancel.clear()

        def follow(description: str, done: int, total: int, note: str) -> None:
            if cancel.is_set():
                raise Cancelled()
            report(done / total if total else 0.0, f"{description} {done}/{total} {note}".strip())

        with listen(follow):
            return stage()

    @property
    def image_role(self) -> str | None:
        """Whether the model animates a picture: "required" (image-to-video), "optional" (TI2V) or None."""
        from ..backbones import resolve_model

        resolved = resolve_model(self.model)
        if resolved.adapter.needs_image:
            return "required"
        return "optional" if resolved.adapter.image_pipeline(resolved.folder) else None

    @property
    def uploads(self) -> Path:
        """Where gradio stores the page's uploads (GRADIO_TEMP_DIR, set by `serve`)."""
        return self.work / "uploads"

    def upload(self, path: str, suffixes: tuple[str, ...], what: str) -> str:
        """`path` as a handler may read it: a regular file in the upload folder (its link not followed out), of
        one of `suffixes`. The server's guard already refused other paths; this holds when it is bypassed."""
        p = Path(path)
        try:
            inside = p.resolve(strict=True).is_relative_to(self.uploads.resolve()) and p.is_file() \
                and not p.is_symlink()
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            raise InputError(f"the page reads only files uploaded to it: upload the {what}")
        if p.suffix.lower() not in suffixes:
            raise InputError(f"{p.name} is not a {what}: upload one of {', '.join(suffixes)}")
        return str(p)

    def message(self, e: BaseException) -> str:
        """`message(e)` with the page's own folders left out: an uploaded file is named by its name only."""
        text = message(e)
        for folder in {str(self.work), str(self.work.resolve())}:
            text = re.sub(re.escape(folder) + r"[^\s'\"]*/([^/\s'\"]+)", r"\1", text)
        return text

    def cancel(self, session: str) -> None:
        self.cancels.setdefault(session, threading.Event()).set()

    # -- the three stages, parsed as their commands ------------------------------------------------------
    def _runtime_args(self) -> list[str]:
        return ["--quiet", "--cache", str(self.store.root)] + (["--device", self.device] if self.device else [])

    def extract(self, video: str, args: list[str]):
        from ..cli.extract import configs
        from ..stages import extract

        video = self.upload(video, VIDEO_SUFFIXES, "reference video")
        params = forms.parse("extract", [video, "--model", self.model, *args, *self._runtime_args()])
        cfg, rt = configs(params)
        return extract(video, cfg, runtime=rt, store=self.store)

    def _image_args(self, image: str | None) -> list[str]:
        return ["--image", self.upload(image, IMAGE_SUFFIXES, "image to animate")] if image else []

    def guide(self, amf: str, prompt: str, setup: str, args: list[str], image: str | None = None):
        """`ditflow guide` with a setup's flags and the form's; `image`: an uploaded picture to animate."""
        from ..cli.guide import guide_configs
        from ..stages import guide

        params = forms.parse("guide", ["--amf", amf or "", "--prompt", prompt or "", *forms.setup_flags(setup), *args,
                                       *self._image_args(image), *self._runtime_args()])
        cfg, rt = guide_configs(params)
        return guide(params["amf"], cfg, image=params["image"], image_fit=params["image_fit"], runtime=rt,
                     store=self.store)

    def inject(self, emb: str, prompt: str, args: list[str], image: str | None = None):
        """`ditflow inject`; `image`: another uploaded picture (none: the guide run's again)."""
        from ..cli.guide import inject_configs
        from ..stages import inject

        params = forms.parse("inject", ["--emb", emb or "", "--prompt", prompt or "", *args, *self._image_args(image),
                                        *self._runtime_args()])
        cfg, rt = inject_configs(params)
        return inject(params["emb"], cfg, image=params["image"], image_fit=params["image_fit"], runtime=rt,
                      store=self.store)

    def preview(self, image: str, fit: str, ref: str | None) -> "np.ndarray":
        """The picture as a run would animate it: fitted to the size of `ref`, an AMF or a run of one (none:
        the model's)."""
        from ..artifacts import load
        from ..backbones import resolve_model
        from ..image import load_image

        if ref:
            art = load(self.store, ref)
            inputs = (load(self.store, art.inputs["amf"], "amf") if art.kind == "gen" else art).inputs
            height, width = inputs["height"], inputs["width"]
        else:
            preset = resolve_model(self.model).preset
            height, width = preset.height, preset.width
        return load_image(self.upload(image, IMAGE_SUFFIXES, "image to animate"), height, width, fit or "crop").pixels

    # -- what the cache holds -----------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """`cache ls`'s rows (its own code), newest first."""
        from ..cli.cache import _row, _when

        return sorted((_row(e) for e in self.store.scan()), key=_when, reverse=True)

    def amf_choices(self) -> list[tuple[str, str]]:
        return [(f"{r['hash'][:12]} · {Path(r['source']).name or '?'} · {r['mode']} · {r['created']}", r["hash"])
                for r in self.rows() if r["kind"] == "amf" and r["state"] == "ok"]

    def emb_choices(self) -> list[tuple[str, str]]:
        """Guide runs in emb mode: what `inject` can replay."""
        return [(f"{r['hash'][:12]} · “{r['prompt']}” · seed {r['seed']} · {r['created']}", r["hash"])
                for r in self.rows() if r["kind"] == "gen" and r["state"] == "ok" and r["mode"] == "emb"]

    def scores(self, gen) -> str:
        """Motion fidelity and CLIP score of a generation against its reference, as `ditflow eval` computes
        them; a metric whose weights are missing says why."""
        from ..eval import EvalSettings, Evaluator, evaluate

        try:
            result = evaluate(Evaluator(EvalSettings()), gen.hash, store=self.store)
        except DitflowError as e:
            return str(e)
        parts = []
        for key, label in (("motion_fidelity", "motion fidelity"), ("clip_score", "CLIP score")):
            value = result.get(key)
            why = (result.get("unavailable") or {}).get(key)
            parts.append(f"{label} **{value:.3f}**" if value is not None else f"{label}: unavailable ({why})")
        notes = list(result.get("warnings") or [])
        return " · ".join(parts) + (f" (tracker {result['tracker']})" if result.get("tracker") else "") + \
            "".join(f"\n\nnote: {n}" for n in notes)

    def report(self, results: str) -> str:
        """`ditflow report --html`'s page for an uploaded results file, its thumbnails from the page's cache
        (only: a results file naming another folder of the server does not make the page read it)."""
        from ..batch.report_html import page
        from ..batch.results import read_results

        rows = read_results(self.upload(results, RESULT_SUFFIXES, "results file (.json or .csv of `ditflow batch`)"))
        return page(rows, self.store)
