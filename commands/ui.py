"""`ditflow ui`: a local web page over the same library and cache (needs the extra: pip install 'ditflow[ui]')."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import CacheOpt, Command, DeviceOpt, ModelSetting, option


def ui(
    model: ModelSetting = None,
    cache: CacheOpt = None,
    host: Annotated[str, option("--host", metavar="HOST", help=(
        "Address to listen on. Anything but 127.0.0.1/localhost/::1 lets other machines in and needs --auth."))] = "127.0.0.1",
    port: Annotated[int, option("--port", metavar="INT", help="Port to listen on.")] = 7860,
    auth: Annotated[Optional[str], option("--auth", metavar="USER:PASSWORD", show_default=False,
                                          help="Ask for this user and password (required with another --host).")] = None,
    auth_file: Annotated[Optional[Path], option("--auth-file", metavar="FILE", show_default=False,
                                                help="A file of USER:PASSWORD lines (instead of, or besides, --auth).")] = None,
    device: DeviceOpt = None,
) -> None:
    """Open the motion-transfer page: reference, generate, reuse, cache and batch report, over the same library
    and cache as the other commands (a run made in the page is a cache hit on the CLI and back). Listens on
    127.0.0.1 unless --host (with --auth) says otherwise; no public link; uploads go to a temporary folder that is
    removed when it stops."""
    from ditflow.config import ExtractConfig
    from ditflow.errors import InputError

    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # found, not imported: serve() points its temp folder first
        raise InputError("ditflow ui needs the ui extra: pip install 'ditflow[ui]'")
    from ditflow.ui.server import serve

    serve(str(cache) if cache is not None else None, model or ExtractConfig.model, host=host, port=port, auth=auth,
          auth_file=auth_file, device=device)


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(ui)
