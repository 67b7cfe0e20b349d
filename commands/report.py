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
    "Write the HTML page here: the tables, plots of MF against CLIP score and against seconds per video, each run's "
    "reference | generated frames (from the cache)."))]
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
    """Tabulate a batch: per model, a row per setup and a column per metric (MF, CLIP score, seconds per video, peak
    memory, and masked MF, temporal consistency and FTD where the rows have them), each mean ± 95% interval.

    The HTML page's thumbnails come from the cache the batch recorded in its results, unless --cache is given.
    """
    from ditflow.batch.report import markdown
    from ditflow.batch.results import read_results
    from ditflow.fileio import check_outputs, check_outputs_again, printable, write_text
    from ditflow.store import Store

    check_outputs({"--md": md, "--html": html}, overwrite, inputs=[("RESULTS", results)], cache=Store(cache).root)
    rows = read_results(results)  # every row checked: a bad file fails here, before anything is written
    text = markdown(rows)
    page_text = None
    if html is not None:  # made before either file is written, so no failure leaves one of them behind
        from ditflow.batch.report_html import page
        from ditflow.batch.results import recorded_cache

        # the thumbnails come from the cache the batch ran with (recorded in its rows) unless --cache says otherwise
        page_text = page(rows, Store(cache if cache is not None else recorded_cache(rows)), frames=frames)
    check_outputs_again({"--md": md, "--html": html}, overwrite, note="it appeared while the report was made")
    if md is None:
        typer.echo(text, nl=False)  # md_text escaped every user string in it, control characters too
    else:
        typer.echo(printable(write_text(md, text)))
    if html is not None:
        typer.echo(printable(write_text(html, page_text)))


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(report)
