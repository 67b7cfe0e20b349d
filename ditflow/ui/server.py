"""`ditflow ui`'s server: safe by default. It listens on 127.0.0.1; any other host needs a password
(`--auth USER:PASSWORD` or a file of such lines) and says so on start; no public share link. Uploads are
limited in size and kind and land in a temporary work folder (gradio's too: GRADIO_TEMP_DIR), removed when
the server stops; nothing outside the cache and that folder is written, and no file of the server is read for
a client but its uploads and the cache's artifacts (guard.py)."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..fileio import printable

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD = "200mb"  # a reference clip or a results file; gradio refuses larger uploads before they are stored


def parse_auth(auth: str | None, auth_file: Path | None) -> list[tuple[str, str]]:
    """USER:PASSWORD pairs from --auth and the lines of --auth-file (blank lines and # comments skipped)."""
    lines = [auth] if auth else []
    if auth_file is not None:
        if auth_file.exists() and not auth_file.is_file():  # a FIFO would block the read forever
            raise InputError(f"--auth-file {printable(auth_file)} is not a regular file (a folder, device or FIFO)")
        try:
            lines += [s.strip() for s in auth_file.read_text().splitlines() if s.strip() and not s.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--auth-file {printable(auth_file)}: cannot read it ({printable(getattr(e, 'strerror', e) or e)})")
    pairs = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise InputError("--auth takes USER:PASSWORD (both non-empty)" + (" in each line of --auth-file" if auth_file else ""))
        pairs.append((user, password))
    return pairs


def check_host(host: str, credentials: list[tuple[str, str]]) -> None:
    if host not in LOOPBACK and not credentials:
        raise InputError(f"--host {printable(host)} lets other machines reach the page: give --auth USER:PASSWORD "
                         f"(or --auth-file FILE) too, or keep the default --host 127.0.0.1")


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be between 1 and 65535, got {port}")


def serve(cache: str | None, model: str, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          auth_file: Path | None = None, device: str | None = None, block: bool = True):
    """Start the page (blocking unless `block` is False: then (app, url, stop) for tests and callers)."""
    from ..backbones import resolve_model
    from ..checks import check_device
    from ..store import Store

    credentials = parse_auth(auth, auth_file)
    check_host(host, credentials)
    check_port(port)
    check_device(device)
    resolved = resolve_model(model)
    _ = resolved.preset  # a bad --model fails now, in one line, not in the page
    store = Store(cache)
    store.check_shape()
    work = Path(tempfile.mkdtemp(prefix="ditflow-ui-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work / "uploads")  # gradio's uploads and served copies go here
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing is sent anywhere
    from starlette.middleware import Middleware

    from .actions import UPLOAD_SUFFIXES, Runner
    from .guard import UploadGuard
    from .page import CSS, build

    runner = Runner(store=store, model=model, work=work, device=device)
    page = build(runner)
    page.queue(default_concurrency_limit=1)
    # every request is checked before gradio reads it: a file is one this page received as an upload
    guard = Middleware(UploadGuard, uploaded=lambda p: p in page.upload_file_set, suffixes=UPLOAD_SUFFIXES,
                       folder=runner.uploads, forget=page.upload_file_set.discard)

    def stop() -> None:
        try:
            page.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    try:
        app, url, _ = page.launch(server_name=host, server_port=port, share=False, auth=credentials or None,
                                  max_file_size=MAX_UPLOAD, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                                  mcp_server=False, css=CSS, footer_links=[], allowed_paths=[],
                                  app_kwargs={"middleware": [guard]})
    except BaseException:
        stop()
        raise
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"ditflow ui: {where} (model {printable(model)}, cache {printable(store.root)})"
          + (f"; password required ({len(credentials)} user(s)), reachable from other machines" if credentials else "")
          + "; Ctrl-C stops it", file=sys.stderr, flush=True)
    if not block:
        return app, where, stop
    # `kill` (SIGTERM) stops it as Ctrl-C does, so the work folder goes either way
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        page.block_thread()
    finally:
        stop()
