"""The page's gate for files: a client of the page (its browser, gradio_client, a raw request) names a file by
its server path in a request's JSON (`{"path": ..., "meta": {"_type": "gradio.FileData"}}`). Gradio copies
whatever path it is given into its served folder before a handler runs, so this ASGI middleware checks every
request before gradio reads it: a file reference is accepted only when it names a file this page received as an
upload; anything else (a server path, a link, a URL for the server to fetch) is refused with 403 and nothing is
read, copied or served. Uploads themselves are kept only for the kinds of file the page takes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

MAX_JSON = 16 * 1024 * 1024  # a page request's JSON: settings, hashes and file references, never file content
UPLOAD_ROUTE = "/upload"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def file_refs(data: Any) -> Iterator[Any]:
    """Every value a client gave as a file's server path: the `path` of any object in the JSON."""
    if isinstance(data, dict):
        if "path" in data:
            yield data["path"]
        for value in data.values():
            yield from file_refs(value)
    elif isinstance(data, list):
        for value in data:
            yield from file_refs(value)


class UploadGuard:
    """ASGI middleware. `uploaded(path)`: whether the page received `path` as an upload; `suffixes`: the kinds
    of file an upload may be (lower-case, with the dot)."""

    def __init__(self, app, uploaded: Callable[[str], bool], suffixes: tuple[str, ...], folder: Path,
                 forget: Callable[[str], None] = lambda path: None):
        self.app, self.uploaded, self.suffixes, self.forget = app, uploaded, suffixes, forget
        self.folder = folder  # where uploads land: the only place a refused upload is deleted from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        if scope["path"].endswith(UPLOAD_ROUTE):
            return await self._upload(scope, receive, send)
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1").lower()
        if ctype.startswith("multipart/"):  # files reach the page through its upload route only
            return await _refuse(send, 415, "files are sent to the page's upload route only")
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_JSON:
                return await _refuse(send, 413, "request too large")
        problem = self._check(body)
        if problem:
            return await _refuse(send, 403, problem)
        sent = False

        async def replay() -> dict[str, Any]:  # the body, read once here, handed on unchanged
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check(self, body: bytes) -> str | None:
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            return None  # not JSON: gradio's own parsing refuses it; it can name no file
        for path in file_refs(data):
            if not isinstance(path, str) or not self.uploaded(path):
                return "the page takes only files uploaded to it"
        return None

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run gradio's upload, then keep only files of the page's kinds: others are deleted from the upload
        folder (they are the page's own temporary copies) and the client gets 415."""
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        if start is None or start["status"] != 200:
            for m in held:
                await send(m)
            return
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        try:
            paths = [p for p in json.loads(body) if isinstance(p, str)]
        except (ValueError, TypeError):
            paths = []
        wrong = [p for p in paths if Path(p).suffix.lower() not in self.suffixes]
        if not wrong:
            for m in held:
                await send(m)
            return
        for p in paths:
            self.forget(p)
            if Path(p).resolve().is_relative_to(self.folder.resolve()):
                Path(p).unlink(missing_ok=True)
        await _refuse(send, 415, f"the page takes {', '.join(self.suffixes)} files only")


async def _refuse(send: Send, status: int, text: str) -> None:
    body = json.dumps({"error": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
