"""`ditflow report`: the paper-style table (Markdown) and a self-contained HTML page from a batch's results."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import CacheOpt, Command, OverwriteOpt, argument, option

ResultsArg = Annotated[Path, argument(metavar="RESULTS", help="The --json-out or --csv file that `ditflow batch` wrote.")]
MdOpt = Annotated[Optional[Path], option("--md", metavar="FILE", show_default=False,
                                         help="Write the Markdown tables here (default: stdout).")]
HtmlOpt = Annotated[Optional[Path], option("--html", metavar="FILE", show_default=False, help=(
    "Write the HTML page here: the tables, a plot of MF against CLIP score, each run's reference | generated frames "
    "(from the cache)."))]
FramesOpt = Annotated[int, option("--frames", metavar="INT", min=1, max=16,
                                  help="Frames per thumbnail strip (each of the reference and the generation).")]


def report(
    results: ResultsArg,
    md: MdOpt = None,
    html: HtmlOpt = None,
    frames: FramesOpt = 4,
    cache: CacheOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Tabulate a batch: per model and setup, MF, CLIP score and seconds per video (mean ± 95% interval)."""
    from ditflow.batch.report import markdown
    from ditflow.batch.results import read_results
    from ditflow.fileio import check_target, write_text

    for out, flag in ((md, "--md"), (html, "--html")):
        if out is not None:
            check_target(out, overwrite, flag=flag)
    rows = read_results(results)
    text = markdown(rows)
    if md is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(str(write_text(md, text)))
    if html is not None:
        from ditflow.batch.report_html import page
        from ditflow.store import Store

        typer.echo(str(write_text(html, page(rows, Store(cache), frames=frames))))


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(report)
