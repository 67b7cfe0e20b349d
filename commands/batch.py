"""`ditflow batch`: extract -> guide (-> inject) -> eval for every row of a manifest, resumable through the cache."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.config import ExtractConfig, GuideConfig

from .options import CacheOpt, ConfigOpt, CpuOffloadOpt, DeviceOpt, QuietOpt, family_setting, setting

ManifestArg = Annotated[Path, typer.Argument(help="runs.csv (video,prompt[,setup][,seed][,frame_range]), .jsonl or .toml (grids: lists expand as videos x prompts x setups x seeds; [setups.NAME] tables).", show_default=False)]
SetupsOpt = Annotated[str, typer.Option("--setups", help="Setups of rows that name none, comma-separated: ditflow-latent, ditflow-emb, smm, moft, injection, backbone, inject, or a table's name.")]
SeedsOpt = Annotated[str, typer.Option("--seeds", help="Seeds of rows that give none, comma-separated.")]
SetupsFileOpt = Annotated[Optional[Path], typer.Option("--setups-file", help="TOML: one [NAME] table of guide settings per setup of your own.", show_default=False)]
BackendOpt = Annotated[str, typer.Option("--backend", help="local (worker processes on this machine) or ray (an existing Ray cluster; pip install ditflow[ray]).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Workers (each holds one model). Default: local, one per visible GPU, else one on the CPU; ray, one per GPU of the cluster, else one.", show_default=False)]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (`ray start --head` prints it; auto: the local one). Default: $RAY_ADDRESS, else a Ray started for this batch.", show_default=False)]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="Write one row per run as CSV.", show_default=False)]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Write one row per run as JSON (a list).", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --csv / --json if they exist.")]
MetricsOpt = Annotated[str, typer.Option("--metrics", help="Comma-separated: clip, mf.")]
TrackerOpt = Annotated[str, typer.Option("--tracker", help="auto (cotracker if available, else lk), lk (built-in, no weights) or cotracker.")]
VariantOpt = Annotated[str, typer.Option("--mf-variant", help="symmetric (SMM paper) or ditflow (the DiTFlow paper's evaluation script).")]


def batch(
    manifest: ManifestArg,
    model: Annotated[Optional[str], setting(ExtractConfig, "model", extra="[default: 5b]")] = None,
    frames: Annotated[Optional[int], setting(ExtractConfig, "frames")] = None,
    height: Annotated[Optional[int], setting(ExtractConfig, "height")] = None,
    width: Annotated[Optional[int], setting(ExtractConfig, "width")] = None,
    blocks: Annotated[Optional[str], setting(ExtractConfig, "blocks")] = None,
    crop: Annotated[Optional[str], setting(ExtractConfig, "crop", extra="[default: none]")] = None,
    setups: SetupsOpt = "ditflow-latent",
    seeds: SeedsOpt = "1",
    setups_file: SetupsFileOpt = None,
    steps: Annotated[Optional[int], setting(GuideConfig, "steps")] = None,
    opt_steps: Annotated[Optional[int], setting(GuideConfig, "opt_steps")] = None,
    lr: Annotated[Optional[str], setting(GuideConfig, "lr")] = None,
    guidance_range: Annotated[Optional[str], setting(GuideConfig, "guidance_range")] = None,
    cfg: Annotated[Optional[float], setting(GuideConfig, "cfg", "--cfg")] = None,
    negative_prompt: Annotated[Optional[str], setting(GuideConfig, "negative_prompt")] = None,
    scheduler: Annotated[Optional[str], family_setting("scheduler", "--scheduler")] = None,
    fast: Annotated[bool, setting(GuideConfig, "fast", "--fast")] = False,
    metrics: MetricsOpt = "clip,mf",
    tracker: TrackerOpt = "auto",
    mf_variant: VariantOpt = "symmetric",
    backend: BackendOpt = "local",
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    csv_path: CsvOpt = None,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every row of a manifest: extract -> guide (or inject) -> eval, one result row per run.

    The cache is the queue: a row whose artifacts exist is read, not recomputed, so a killed batch
    resumes where it stopped. A failing row is recorded with its error and the rest run; the exit code is
    1 when any row failed. Without --csv/--json the rows go to stdout as JSON lines.
    """
    import json

    from ditflow.batch import BatchSettings, check_backend, read_manifest, run_batch
    from ditflow.batch.results import write_csv, write_json
    from ditflow.config_file import apply_overrides, section
    from ditflow.errors import DitflowError
    from ditflow.fileio import check_target
    from ditflow.store import Store

    from ._common import file_settings, parse_ints, parse_pair, runtime

    for out, flag in ((csv_path, "--csv"), (json_path, "--json")):
        if out is not None:  # before anything runs
            check_target(out, overwrite, flag=flag)
    check_backend(backend, workers, address)
    data = file_settings(config)
    ecfg = apply_overrides(ExtractConfig(), section(ExtractConfig(), data, "extract"),
                           {"model": model, "frames": frames, "height": height, "width": width,
                            "blocks": parse_ints(blocks, "--blocks"), "crop": crop})
    gcfg = apply_overrides(GuideConfig(), section(GuideConfig(), data, "guide"),
                           {"steps": steps, "opt_steps": opt_steps, "lr": parse_pair(lr, "--lr"),
                            "guidance_range": parse_pair(guidance_range, "--guidance-range", int), "cfg": cfg,
                            "negative_prompt": negative_prompt, "scheduler": scheduler, "fast": fast or None})
    rt = runtime(data, device=device, cpu_offload=cpu_offload or None, quiet=True)
    custom = _setups_file(setups_file) if setups_file else {}
    m = read_manifest(manifest, setups=_names(setups), seeds=_seeds(seeds), custom=custom)
    settings = BatchSettings(cache=str(Store(cache).root.absolute()), extract=ecfg, guide=gcfg,
                             eval=_eval_settings(metrics, tracker, mf_variant), runtime=rt, setups=m.setups)
    results = run_batch(m.runs, settings, backend=backend, workers=workers, address=address, quiet=quiet)
    if csv_path is not None:
        typer.echo(str(write_csv(results, csv_path)))
    if json_path is not None:
        typer.echo(str(write_json(results, json_path)))
    if csv_path is None and json_path is None:
        for r in results:
            typer.echo(json.dumps(r))
    failed = sum(r["status"] != "ok" for r in results)
    if not quiet:
        cached = sum(bool(r.get("cached")) for r in results)
        typer.echo(f"{len(results) - failed} of {len(results)} runs ok ({cached} from the cache), {failed} failed", err=True)
    if failed:  # after every output is written, so scripts notice
        raise DitflowError(f"{failed} of {len(results)} runs failed (see the error column)")


def _names(text: str) -> list[str]:
    from ditflow.errors import InputError

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("--setups needs at least one setup")
    return names


def _seeds(text: str) -> list[int]:
    from ditflow.batch.manifest import parse_seed
    from ditflow.errors import InputError

    seeds = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        seed, error = parse_seed(part)
        if error:
            raise InputError(f"--seeds: {error}")
        seeds.append(seed)
    if not seeds:
        raise InputError("--seeds needs at least one seed")
    return seeds


def _setups_file(path: Path) -> dict:
    import tomllib

    from ditflow.batch.setups import check_custom
    from ditflow.errors import InputError

    if not path.is_file() or path.suffix.lower() != ".toml":
        raise InputError(f"--setups-file must be an existing .toml file: {path}")
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse --setups-file {path}: {str(e).splitlines()[0]}")
    return check_custom(tables, str(path))


def _eval_settings(metrics: str, tracker: str, mf_variant: str):
    from ditflow.eval import EvalSettings, Evaluator, parse_metrics

    settings = EvalSettings(metrics=parse_metrics(metrics), tracker=tracker, mf_variant=mf_variant)
    Evaluator(settings)  # checks the tracker and variant names now
    return settings


def register(app: typer.Typer) -> None:
    app.command()(batch)
