"""`ditflow eval`: CLIP text alignment and motion fidelity of generated videos, one or a manifest of many."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .options import CacheOpt, QuietOpt

VideoArg = Annotated[Optional[str], typer.Argument(metavar="VIDEO", help="Generated video: a file, a folder of frames, or a gen artifact hash.", show_default=False)]
ReferenceOpt = Annotated[Optional[str], typer.Option("--reference", "-r", help="Reference video (file, folder or amf artifact hash). Default for a gen hash: the amf it was guided by.", show_default=False)]
PromptOpt = Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt for the CLIP score. Default for a gen hash: its prompt.", show_default=False)]
MetricsOpt = Annotated[str, typer.Option("--metrics", help="Comma-separated: clip, mf.")]
TrackerOpt = Annotated[str, typer.Option("--tracker", help="auto (cotracker if available, else lk), lk (built-in, no weights) or cotracker.")]
VariantOpt = Annotated[str, typer.Option("--mf-variant", help="symmetric (SMM paper) or ditflow (the DiTFlow paper's evaluation script).")]
GridOpt = Annotated[int, typer.Option("--grid-size", help="Track a grid of N×N points of the first frame.")]
ClipModelOpt = Annotated[str, typer.Option("--clip-model", help="open_clip model name.")]
ClipPretrainedOpt = Annotated[str, typer.Option("--clip-pretrained", help="open_clip pretrained tag (read from the local caches only) or a checkpoint file.")]
CoRepoOpt = Annotated[Optional[Path], typer.Option("--cotracker-repo", help="Local checkout of facebookresearch/co-tracker (default: $DITFLOW_COTRACKER_REPO, else the torch hub cache).", show_default=False)]
CoCkptOpt = Annotated[Optional[Path], typer.Option("--cotracker-checkpoint", help="CoTracker3 offline checkpoint, scaled_offline.pth (default: $DITFLOW_COTRACKER_CHECKPOINT, else the torch hub cache).", show_default=False)]
ManifestOpt = Annotated[Optional[Path], typer.Option("--manifest", help="Batch mode: a .csv (header video,reference,prompt) or .jsonl manifest.", show_default=False)]
JsonPathOpt = Annotated[Optional[Path], typer.Option("--json", help="Write the JSON results here instead of stdout.", show_default=False)]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="Also write the results as CSV (batch mode).", show_default=False)]
MaxFramesOpt = Annotated[Optional[int], typer.Option("--max-frames", help="Use only the first N frames.", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the --json / --csv files if they exist.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Device for CLIP and CoTracker: cpu, cuda, cuda:1...")]


MAX_GRID = 100  # 10,000 tracks: their pairwise similarities take 0.8 GB


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def eval_command(
    video: VideoArg = None,
    reference: ReferenceOpt = None,
    prompt: PromptOpt = None,
    metrics: MetricsOpt = "clip,mf",
    tracker: TrackerOpt = "auto",
    mf_variant: VariantOpt = "symmetric",
    grid_size: GridOpt = 55,
    clip_model: ClipModelOpt = "ViT-B-32",
    clip_pretrained: ClipPretrainedOpt = "openai",
    cotracker_repo: CoRepoOpt = None,
    cotracker_checkpoint: CoCkptOpt = None,
    manifest: ManifestOpt = None,
    json_path: JsonPathOpt = None,
    csv_path: CsvOpt = None,
    max_frames: MaxFramesOpt = None,
    device: DeviceOpt = "cpu",
    cache: CacheOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score generated videos: CLIP text alignment (clip_score) and motion fidelity against the reference.

    JSON goes to stdout (or --json PATH); a table goes to stderr. A metric whose weights are missing is
    reported as null with the reason under "unavailable"; the others are still computed.
    """
    from rich.console import Console

    from ditflow.errors import InputError
    from ditflow.eval import EvalSettings, Evaluator, evaluate, parse_metrics
    from ditflow.store import Store

    console = Console(stderr=True, quiet=quiet)
    if (video is None) == (manifest is None):
        raise InputError("give either a VIDEO or --manifest FILE")
    from ditflow.fileio import check_target

    from ditflow.checks import check_device

    for out, flag in ((json_path, "--json"), (csv_path, "--csv")):
        if out is not None:  # before any model loads or video is read
            check_target(out, overwrite, flag=flag)
    check_device(device)
    if not 2 <= grid_size <= MAX_GRID:  # N*N tracks, compared pairwise: memory grows as N**4
        raise InputError(f"--grid-size must be between 2 and {MAX_GRID} (N x N points; the paper's is 55), got {grid_size}")
    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be at least 2 (motion needs two frames), got {max_frames}")
    settings = EvalSettings(
        metrics=parse_metrics(metrics), clip_model=clip_model, clip_pretrained=clip_pretrained, tracker=tracker,
        mf_variant=mf_variant, grid_size=grid_size, device=device,
        cotracker_repo=str(cotracker_repo) if cotracker_repo else None,
        cotracker_checkpoint=str(cotracker_checkpoint) if cotracker_checkpoint else None,
    )
    evaluator = Evaluator(settings)
    store = Store(cache)

    if manifest is None:
        if csv_path is not None:
            raise InputError("--csv is for batch mode (--manifest)")
        result = evaluate(evaluator, video, reference, prompt, store=store, max_frames=max_frames)
        for note in evaluator.notes:
            console.print(f"[dim]{note}[/dim]")
        console.print(_single_table(result))
        for warning in result.get("warnings", []):
            console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        _emit(json.dumps(result, indent=2), json_path)
        return

    from ditflow.eval.batch import read_manifest, run_rows, write_csv

    rows = read_manifest(manifest)
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
    if csv_path is not None:
        typer.echo(str(write_csv(results, csv_path)))
    if json_path is not None:
        _emit(json.dumps(results, indent=2), json_path)
    elif csv_path is None:
        for r in results:
            typer.echo(json.dumps(r))
    failed = sum(1 for r in results if r["error"])
    if failed:  # after all output is written: exit 1 with one error line, so scripts notice
        from ditflow.errors import DitflowError

        raise DitflowError(f"{failed} of {len(results)} rows failed (see the error column)")


def _emit(text: str, path: Path | None) -> None:
    """JSON to stdout, or atomically to `path` (then its path goes to stdout)."""
    if path is None:
        typer.echo(text)
        return
    from ditflow.fileio import write_text

    typer.echo(str(write_text(path, text + "\n")))


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
    return table


def _tracks_note(result: dict[str, Any]) -> str:
    tracks = result["tracks"]
    low = " (few: see the warning)" if result.get("warnings") else ""
    return f"tracks: video {tracks['video']}, reference {tracks['reference']} of {tracks.get('grid', '?')} grid points{low}"


def _batch_table(results: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="ditflow eval", title_justify="left")
    table.add_column("row", justify="right")
    table.add_column("video", overflow="ellipsis", max_width=24)
    table.add_column("reference", overflow="ellipsis", max_width=24)
    table.add_column("clip", justify="right", no_wrap=True)
    table.add_column("MF", justify="right", no_wrap=True)
    table.add_column("tracker", no_wrap=True)
    table.add_column("error / note", ratio=1, overflow="fold")
    for r in results:
        note = f"[red]{r['error']}[/red]" if r["error"] else ", ".join(
            [f"no {k}" for k in (r.get("unavailable") or {})] + (["few tracks"] if r.get("warnings") else []))
        table.add_row(str(r["row"]), str(r["video"]), str(r["reference"] or "—"), _fmt(r["clip_score"]),
                      _fmt(r["motion_fidelity"]), str(r["tracker"] or "—"), note)
    return table


def _unavailable_reasons(results: list[dict[str, Any]]) -> list[str]:
    """Each distinct 'metric: reason' once, to print under the batch table instead of in every row."""
    return list(dict.fromkeys(f"{k} unavailable: {v}" for r in results for k, v in (r.get("unavailable") or {}).items()))
