"""`ditflow ui` as a client of its API sees it (raw HTTP, as gradio_client or a script would send it): a file
reference must name an upload of this page; a server path, a link out of the upload folder or a URL is refused
before anything is read, copied or served; uploads keep only the page's kinds of file; error lines never name
server paths."""
from __future__ import annotations

import json
import os
import socket

import pytest

pytest.importorskip("gradio", reason="the ui extra is not installed (pip install -e '.[ui]')")
httpx = pytest.importorskip("httpx")

SECRET = "server-only-4f1c9e"  # content no response, served file or upload copy may ever hold
FILE_ENDPOINTS = ("extract", "show")  # every handler that takes a file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """`ditflow ui --model toy` (the server `ditflow ui` starts, in this process) and secrets on its machine."""
    from ditflow.ui.server import serve

    base = tmp_path_factory.mktemp("ui-api")
    secrets = {}
    for name in ("secret.json", "secret.csv", "secret.mp4", "secret.png"):
        (base / name).write_text(json.dumps([{"k": SECRET}]) if name.endswith(".json") else SECRET)
        secrets[name] = base / name
    app, url, stop = serve(str(base / "cache"), "toy", port=_free_port(), device="cpu", block=False)
    client = httpx.Client(base_url=url, timeout=60)
    info = client.get("/gradio_api/info").json()["named_endpoints"]
    yield {"url": url, "client": client, "info": info, "secrets": secrets, "base": base}
    client.close()
    stop()


def _work_folder() -> str:
    return os.environ["GRADIO_TEMP_DIR"]  # serve() points gradio's uploads and served copies there


def _args(page, endpoint: str, file_value) -> list:
    """A valid call of `endpoint` but for its file parameter, which gets `file_value`."""
    out = []
    for p in page["info"]["/" + endpoint]["parameters"]:
        ptype = p.get("python_type", {}).get("type", "")
        if ptype == "filepath":
            out.append(file_value)
        else:
            out.append(False if ptype == "bool" else p.get("parameter_default") or "")
    return out


def _nothing_of(page, name: str) -> None:
    """No copy of the server's file anywhere under the page's work folder."""
    for root, _, files in os.walk(os.path.dirname(_work_folder())):
        for f in files:
            path = os.path.join(root, f)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    assert SECRET.encode() not in fh.read(), f"{path} holds the server's {name}"


def _refs(path: str) -> list[dict]:
    return [{"path": path}, {"path": path, "meta": {"_type": "gradio.FileData"}},
            {"path": path, "url": f"/gradio_api/file={path}", "orig_name": "x", "meta": {"_type": "gradio.FileData"}}]


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
@pytest.mark.parametrize("route", ["call", "queue"])
def test_a_server_path_is_refused_before_anything_is_read(page, endpoint, route):
    client = page["client"]
    names = [n for n in page["secrets"] if n.endswith((".mp4", ".png"))] if endpoint == "extract" \
        else [n for n in page["secrets"] if n.endswith((".json", ".csv"))]
    for name in names:
        for ref in _refs(str(page["secrets"][name])):
            data = _args(page, endpoint, ref)
            if route == "call":
                r = client.post(f"/gradio_api/call/{endpoint}", json={"data": data})
            else:
                fn = next(i for i, d in enumerate(client.get("/config").json()["dependencies"])
                          if d.get("api_name") == endpoint)
                r = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": "probe",
                                                                "event_data": None, "trigger_id": None})
            assert r.status_code == 403 and SECRET not in r.text and str(page["base"]) not in r.text
        _nothing_of(page, name)


@pytest.mark.parametrize("path", ["/etc/passwd", "http://127.0.0.1:1/secret.json", "../../secret.json"])
def test_other_references_are_refused_too(page, path):
    r = page["client"].post("/gradio_api/call/show", json={"data": _args(page, "show", {"path": path})})
    assert r.status_code == 403


def test_a_link_planted_in_the_upload_folder_is_not_followed(page):
    """A name under the upload folder that is not one of its uploads (a link to a server file) is refused."""
    os.makedirs(_work_folder(), exist_ok=True)
    link = os.path.join(_work_folder(), "planted.json")
    os.symlink(page["secrets"]["secret.json"], link)
    try:
        r = page["client"].post("/gradio_api/call/show", json={"data": _args(page, "show", {"path": link})})
        assert r.status_code == 403
    finally:
        os.unlink(link)


def _upload(page, name: str, content: bytes) -> httpx.Response:
    return page["client"].post("/gradio_api/upload", files={"files": (name, content)})


def test_an_upload_of_another_kind_is_refused_and_not_kept(page):
    r = _upload(page, "notes.txt", SECRET.encode())
    assert r.status_code == 415
    _nothing_of(page, "upload")


def _result(client, endpoint: str, data: list) -> str:
    r = client.post(f"/gradio_api/call/{endpoint}", json={"data": data})
    assert r.status_code == 200, r.text
    event = r.json()["event_id"]
    return client.get(f"/gradio_api/call/{endpoint}/{event}").text


def test_an_uploaded_file_is_read_and_its_error_names_only_its_name(page):
    r = _upload(page, "results.json", b'{"not": "rows"}')
    assert r.status_code == 200
    path = r.json()[0]
    stream = _result(page["client"], "show", _args(page, "show", {"path": path, "meta": {"_type": "gradio.FileData"}}))
    assert "error: results.json is not a list of result rows" in stream
    assert _work_folder() not in stream and os.path.dirname(_work_folder()) not in stream


def test_an_auth_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path, capsys, monkeypatch):
    from helpers import assert_one_line_error, run_cli

    fifo = tmp_path / "users"
    os.mkfifo(fifo)
    code, out, err = run_cli(["ui", "--model", "toy", "--auth-file", str(fifo)], capsys, monkeypatch)
    assert_one_line_error(code, out, err, f"--auth-file {fifo} is not a regular file", 2)
