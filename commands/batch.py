"""`ditflow batch`: extract -> guide (-> inject) -> eval for every row of a manifest, resumable through the cache."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.batch import BACKENDS
from ditflow.config import ExtractConfig, GuideConfig

from .options import (RUNTIME, BlocksOpt, CacheOpt, CfgOpt, Command, ConfigOpt, CpuOffloadOpt, CropOpt,
                      CsvOpt, DeviceOpt, FastOpt, FramesOpt, GuidanceRangeOpt, HeightOpt, JsonOpt, JsonOutOpt, LrOpt,
                      MetricsOpt, ModelSetting, NegativePromptOpt, OptStepsOpt, OverwriteOpt, QuietOpt, SchedulerOpt,
                      StepsOpt, TrackerOpt, VariantOpt, WidthOpt, argument, choices, option)

RUNS = "Runs"
ManifestArg = Annotated[Path, argument(metavar="MANIFEST", help="runs.csv (video,prompt[,setup][,seed][,frame_range][,image][,image_fit]), .jsonl or .toml (grids: lists expand as videos x prompts x setups x seeds; [setups.NAME] tables).")]
SetupsOpt = Annotated[str, option("--setups", metavar="SETUP,...", panel=RUNS, help="Setups of rows that name none, comma-separated: ditflow-latent, ditflow-emb, smm, moft, injection, backbone, inject, or a table's name.")]
SeedsOpt = Annotated[str, option("--seeds", metavar="INT,...", panel=RUNS, help="Seeds of rows that give none, comma-separated.")]
SetupsFileOpt = Annotated[Optional[Path], option("--setups-file", metavar="FILE", panel=RUNS, show_default=False, help="TOML: one [NAME] table of guide settings per setup of your own.")]
BackendOpt = Annotated[str, option("--backend", metavar=choices(BACKENDS), panel=RUNTIME, help="local (worker processes on this machine) or ray (an existing Ray cluster; pip install ditflow[ray]).")]
WorkersOpt = Annotated[Optional[int], option("--workers", metavar="INT", panel=RUNTIME, show_default=False, help="Workers (each holds one model). Default: local, one per visible GPU, else one on the CPU; ray, one per GPU of the cluster, else one.")]
AddressOpt = Annotated[Optional[str], option("--address", metavar="ADDRESS", panel=RUNTIME, show_default=False, help="Ray cluster address (`ray start --head` prints it; auto: the local one). Default: $RAY_ADDRESS, else a Ray started for this batch.")]


def batch(
    manifest: ManifestArg,
    setups: SetupsOpt = "ditflow-latent",
    seeds: SeedsOpt = "1",
    setups_file: SetupsFileOpt = None,
    model: ModelSetting = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    blocks: BlocksOpt = None,
    crop: CropOpt = None,
    negative_prompt: NegativePromptOpt = None,
    opt_steps: OptStepsOpt = None,
    lr: LrOpt = None,
    guidance_range: GuidanceRangeOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    fast: FastOpt = False,
    metrics: MetricsOpt = None,
    tracker: TrackerOpt = None,
    mf_variant: VariantOpt = None,
    csv_path: CsvOpt = None,
    json_file: JsonOutOpt = None,
    as_json: JsonOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
    backend: BackendOpt = "local",
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = None,
) -> None:
    """Run every row of a manifest: extract -> guide (or inject) -> eval, one result row per run.

    The cache is the queue: a row whose artifacts exist is read, not recomputed, so a killed batch
    resumes where it stopped. A failing row is recorded with its error and the rest run; the exit code is
    1 when any row failed. The rows go to stdout as JSON lines, or with --json as one JSON list; with
    --csv or --json-out (and no --json) the written files' paths instead.
    """
    import json

    from ditflow.batch import BatchSettings, check_backend, check_setups, read_manifest, run_batch
    from ditflow.batch.results import results_json, write_csv, write_json
    from ditflow.config_file import apply_overrides, section
    from ditflow.errors import DitflowError
    from ditflow.fileio import check_not_inputs, check_outputs, check_outputs_again
    from ditflow.store import Store

    from ._common import emit_result, file_settings, parse_ints, parse_pair, runtime

    outputs = {"--csv": csv_path, "--json-out": json_file}
    store = Store(cache)
    check_outputs(outputs, overwrite, cache=store.root,  # before anything runs; the rows' videos once the manifest is read
                  inputs=[("the manifest", manifest), ("--config", config), ("--setups-file", setups_file)])
    check_backend(backend, workers, address)
    store.check_shape()  # a file named as --cache fails now, not in every row; a read-only one may still serve hits
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
    names = _names(setups)
    m = read_manifest(manifest, setups=names, seeds=_seeds(seeds), custom=custom)
    check_setups(names, m.setups)
    read = {r.path: f"the video of row {r.row}" for r in reversed(m.runs) if r.video}  # each file once, its first row
    read |= {r.image_path: f"the image of row {r.row}" for r in reversed(m.runs) if r.image_path}
    check_not_inputs(outputs, [(what, path) for path, what in read.items()])
    settings = BatchSettings(cache=str(store.root.absolute()), extract=ecfg, guide=gcfg,
                             eval=_eval_settings(metrics, tracker, mf_variant), runtime=rt, setups=m.setups)
    results = run_batch(m.runs, settings, backend=backend, workers=workers, address=address, quiet=quiet)
    check_outputs_again(outputs, overwrite, note="it appeared while the batch ran; its finished rows are in the "
                                                 "cache: run it again with another file name to write them at once")
    written = [str(write_csv(results, csv_path))] if csv_path is not None else []
    written += [str(write_json(results, json_file))] if json_file is not None else []
    emit_result(results_json(results), [json.dumps(r) for r in results], written, as_json, quiet)
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
    from ditflow.fileio import check_input_file

    if path.suffix.lower() != ".toml":
        raise InputError(f"--setups-file must be an existing .toml file: {path}")
    check_input_file(path, "--setups-file")
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse --setups-file {path}: {str(e).splitlines()[0]}")
    return check_custom(tables, str(path))


def _eval_settings(metrics: str | None, tracker: str | None, mf_variant: str | None):
    from ditflow.config_file import apply_overrides
    from ditflow.eval import EvalSettings, parse_metrics

    settings = apply_overrides(EvalSettings(), {"metrics": None if metrics is None else parse_metrics(metrics),
                                                "tracker": tracker, "mf_variant": mf_variant})
    settings.validate()  # the tracker and variant names, now rather than in a worker
    return settings


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(batch)
