"""`ditflow eval`: CLIP text alignment, motion fidelity, temporal consistency and Fréchet trajectory distance of
generated videos, one or a manifest of many."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ditflow.eval.settings import EvalSettings

from .options import (EVALUATION, RUNTIME, CacheOpt, Command, CsvOpt, JsonOpt, JsonOutOpt, MetricsOpt, OverwriteOpt, QuietOpt,
                      TrackerOpt, VariantOpt, argument, option, setting)

WHAT = "What to score"
MODELS = "Tracker and CLIP weights"
APPEARED = "it appeared while the videos were scored"  # an output checked again before it is written
VideoArg = Annotated[Optional[str], argument(metavar="VIDEO", help="Generated video: a file, a folder of frames, or a gen artifact hash.")]
ReferenceOpt = Annotated[Optional[str], option("--reference", "-r", metavar="VIDEO", panel=WHAT, show_default=False, help="Reference video (file, folder or amf artifact hash). Default for a gen hash: the amf it was guided by.")]
PromptOpt = Annotated[Optional[str], option("--prompt", "-p", metavar="TEXT", panel=WHAT, show_default=False, help="Prompt for the CLIP score. Default for a gen hash: its prompt.")]
ManifestOpt = Annotated[Optional[Path], option("--manifest", metavar="FILE", panel=WHAT, show_default=False, help="Batch mode: a .csv (header video,reference,prompt) or .jsonl manifest.")]
MaxFramesOpt = Annotated[Optional[int], option("--max-frames", metavar="INT", panel=EVALUATION, show_default=False, help="Use only the first N frames.")]


def register(app: typer.Typer) -> None:
    app.command("eval", cls=Command)(eval_command)


def eval_command(
    video: VideoArg = None,
    reference: ReferenceOpt = None,
    prompt: PromptOpt = None,
    manifest: ManifestOpt = None,
    metrics: MetricsOpt = None,
    tracker: TrackerOpt = None,
    mf_variant: VariantOpt = None,
    grid_size: Annotated[Optional[int], setting(EvalSettings, "grid_size", panel=EVALUATION, metavar="N")] = None,
    max_frames: MaxFramesOpt = None,
    mask: Annotated[Optional[str], setting(EvalSettings, "mask", panel=WHAT, metavar="PATH|x0,y0,x1,y1")] = None,
    tc_model: Annotated[Optional[str], setting(EvalSettings, "tc_model", panel=EVALUATION)] = None,
    clip_model: Annotated[Optional[str], setting(EvalSettings, "clip_model", panel=MODELS, metavar="NAME")] = None,
    clip_pretrained: Annotated[Optional[str], setting(EvalSettings, "clip_pretrained", panel=MODELS, metavar="TAG")] = None,
    cotracker_repo: Annotated[Optional[str], setting(EvalSettings, "cotracker_repo", panel=MODELS, metavar="PATH")] = None,
    cotracker_checkpoint: Annotated[Optional[str], setting(EvalSettings, "cotracker_checkpoint", panel=MODELS, metavar="PATH")] = None,
    dino_model: Annotated[Optional[str], setting(EvalSettings, "dino_model", panel=MODELS, metavar="REPO|PATH")] = None,
    as_json: JsonOpt = False,
    json_file: JsonOutOpt = None,
    csv_path: CsvOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    device: Annotated[Optional[str], setting(EvalSettings, "device", "--device", panel=RUNTIME, metavar="DEVICE")] = None,
    cache: CacheOpt = None,
) -> None:
    """Score generated videos: CLIP text alignment (clip_score), motion fidelity against the reference, and with
    --metrics tc,ftd temporal consistency and Fréchet trajectory distance (see docs/batch.md).

    The result is JSON on stdout (a manifest's: one line per row, or with --json one list); with --csv or
    --json-out (and no --json) the written files' paths instead. A table goes to stderr. A metric whose
    weights are missing is reported as null with the reason under "unavailable"; the others are still computed.
    """
    params = dict(locals())
    from rich.console import Console

    from ditflow.config_file import apply_overrides
    from ditflow.errors import InputError
    from ditflow.eval import Evaluator, evaluate, parse_metrics
    from ditflow.fileio import check_not_inputs, check_outputs, check_outputs_again, write_text
    from ditflow.store import Store

    from ._common import emit_result, flag_settings

    console = Console(stderr=True, quiet=quiet)
    if (video is None) == (manifest is None):
        raise InputError("give either a VIDEO or --manifest FILE")
    store = Store(cache)
    outputs = {"--json-out": json_file, "--csv": csv_path}
    # before any model loads or video is read; the rows' videos once the manifest is read
    check_outputs(outputs, overwrite, inputs=_inputs(video, reference, manifest, []), cache=store.root)
    rows = None
    if manifest is not None:
        from ditflow.eval.batch import read_manifest

        rows = read_manifest(manifest)
        check_not_inputs(outputs, _inputs(None, None, manifest, rows))
    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be at least 2 (motion needs two frames), got {max_frames}")
    params["metrics"] = None if metrics is None else parse_metrics(metrics)
    evaluator = Evaluator(apply_overrides(EvalSettings(), flag_settings(EvalSettings, params)))  # validates them

    if manifest is None:
        if csv_path is not None:
            raise InputError("--csv is for batch mode (--manifest)")
        result = evaluate(evaluator, video, reference, prompt, store=store, max_frames=max_frames)
        for note in evaluator.notes:
            console.print(f"[dim]{note}[/dim]")
        console.print(_single_table(result))
        for warning in result.get("warnings", []):
            console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        document = json.dumps(result, indent=2)
        check_outputs_again(outputs, overwrite, note=APPEARED)
        written = [str(write_text(json_file, document + "\n"))] if json_file is not None else []
        emit_result(document, [document], written, as_json, quiet)
        return

    from ditflow.eval.batch import run_rows, write_csv

    base = manifest.resolve().parent

    def score_row(row):
        return evaluate(evaluator, row.video, row.reference, row.prompt, store=store, base=base, max_frames=max_frames)

    def progress(result: dict[str, Any]) -> None:
        status = f"[red]error[/red]: {result['error']}" if result["error"] else "ok"
        console.print(f"row {result['row']}/{len(rows)} {result['video']}: {status}")

    results = run_rows(rows, score_row, progress)
    for note in dict.fromkeys(evaluator.notes):
        console.print(f"[dim]{note}[/dim]")
    console.print(_batch_table(results))
    for reason in _unavailable_reasons(results):
        console.print(f"[yellow]{reason}[/yellow]")
    for r in results:
        for warning in r.get("warnings") or []:
            console.print(f"warning: row {r['row']}: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    document = json.dumps(results, indent=2)
    check_outputs_again(outputs, overwrite, note=APPEARED)
    written = [str(write_csv(results, csv_path))] if csv_path is not None else []
    written += [str(write_text(json_file, document + "\n"))] if json_file is not None else []
    emit_result(document, [json.dumps(r) for r in results], written, as_json, quiet)
    failed = sum(1 for r in results if r["error"])
    if failed:  # after all output is written: exit 1 with one error line, so scripts notice
        from ditflow.errors import DitflowError

        raise DitflowError(f"{failed} of {len(results)} rows failed (see the error column)")


def _inputs(video: str | None, reference: str | None, manifest: Path | None, rows) -> list[tuple[str, Path]]:
    """What an eval reads, as paths (a hash names no file, so it never matches an output)."""
    if manifest is None:
        return [("VIDEO", Path(video)), *([("--reference", Path(reference))] if reference else [])]
    base = manifest.resolve().parent
    found = [("the manifest", manifest)]
    for row in rows:
        for what, arg in (("video", row.video), ("reference", row.reference)):
            if arg:
                found.append((f"the {what} of row {row.index}", base / Path(arg).expanduser()))
    return found


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def _single_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"{result['video']} vs {result['reference'] or '—'}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note", overflow="fold")
    missing = result.get("unavailable", {})
    mf_note = f"{result['tracker']}, {result['mf_variant']}, {_tracks_note(result)}" if result.get("tracks") else ""
    table.add_row("clip_score", _fmt(result["clip_score"]), missing.get("clip_score", result.get("clip_model", "")))
    table.add_row("motion_fidelity", _fmt(result["motion_fidelity"]), missing.get("motion_fidelity", mf_note))
    for key, note in _extra_rows(result):
        table.add_row(key, _fmt(result[key]), missing.get(key, note))
    return table


def _extra_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, note) of each score beyond clip/MF that the result holds (asked for by --metrics / --mask)."""
    inside = result.get("tracks_in_mask") or {}
    points = result.get("ftd_points") or {}
    notes = {"mf_masked": f"tracks in the mask: video {inside.get('video', '?')}, reference {inside.get('reference', '?')}",
             "temporal_consistency": f"{result.get('tc_model', '')}, consecutive frames",
             "temporal_consistency_first": "each frame against the first" if result.get("temporal_consistency_first") is not None
             else "(as above)",
             "ftd": f"{result.get('tracker')}, {points.get('all', '?')} of {points.get('grid', '?')} points; lower is closer",
             "ftd_foreground": f"{points.get('foreground', '?')} points in the mask",
             "ftd_background": f"{points.get('background', '?')} points outside the mask"}
    return [(k, note) for k, note in notes.items() if k in result]


def _tracks_note(result: dict[str, Any]) -> str:
    tracks = result["tracks"]
    low = " (few: see the warning)" if _few_tracks(result) else ""
    return f"tracks: video {tracks['video']}, reference {tracks['reference']} of {tracks.get('grid', '?')} grid points{low}"


def _few_tracks(result: dict[str, Any]) -> bool:
    """Whether a track count is too few to trust (its warning is among others, e.g. frame counts that differ)."""
    from ditflow.eval import few_tracks_warning

    tracks = result.get("tracks") or {}
    grid = tracks.get("grid")
    return grid is not None and any(few_tracks_warning(tracks[k], grid, k) for k in ("video", "reference") if k in tracks)


def _batch_table(results: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="ditflow eval", title_justify="left")
    table.add_column("row", justify="right")
    table.add_column("video", overflow="ellipsis", max_width=24)
    table.add_column("reference", overflow="ellipsis", max_width=24)
    table.add_column("clip", justify="right", no_wrap=True)
    table.add_column("MF", justify="right", no_wrap=True)
    extra = [k for k in ("mf_masked", "temporal_consistency", "ftd") if any(k in r for r in results)]
    for k in extra:
        table.add_column({"mf_masked": "MF mask", "temporal_consistency": "TC", "ftd": "FTD"}[k], justify="right", no_wrap=True)
    table.add_column("tracker", no_wrap=True)
    table.add_column("error / note", ratio=1, overflow="fold")
    for r in results:
        note = f"[red]{r['error']}[/red]" if r["error"] else ", ".join(
            [f"no {k}" for k in (r.get("unavailable") or {})]
            + (["few tracks"] if _few_tracks(r) else ["see the warning"] if r.get("warnings") else []))
        table.add_row(str(r["row"]), str(r["video"]), str(r["reference"] or "—"), _fmt(r["clip_score"]),
                      _fmt(r["motion_fidelity"]), *(_fmt(r.get(k)) for k in extra), str(r["tracker"] or "—"), note)
    return table


def _unavailable_reasons(results: list[dict[str, Any]]) -> list[str]:
    """Each distinct 'metric: reason' once, to print under the batch table instead of in every row."""
    return list(dict.fromkeys(f"{k} unavailable: {v}" for r in results for k, v in (r.get("unavailable") or {}).items()))
