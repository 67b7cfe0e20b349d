"""The page's store tabs: the cache (browse, open, export, delete artifacts) and a batch's report. Like the
model tabs (page.py), every button is one call of the library the CLI calls, a failure its one line."""
from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr

from . import media
from .actions import Runner


# -- 4 cache -------------------------------------------------------------------------------------------------
def cache_table(runner: Runner, limit: int = 200) -> str:
    """The cache as an HTML table: kind, prompt or source, date, size and a thumbnail per artifact."""
    from ..artifacts import load
    from ..cli.cache import _human
    from ..errors import DitflowError

    rows = runner.rows()
    if not rows:
        return f"<p>No artifacts in {html.escape(str(runner.store.root))} yet.</p>"
    out = ["<table><tr><th></th><th>kind</th><th>hash</th><th>mode</th><th>prompt / source</th><th>created</th>"
           "<th>size</th></tr>"]
    for r in rows[:limit]:
        thumb = ""
        if r["state"] == "ok" and r["kind"] in ("amf", "gen"):
            try:
                thumb = f"<img alt='{r['kind']} {r['hash'][:12]}' src='{media.thumbnail(load(runner.store, r['hash']).frames)}'>"
            except DitflowError:
                thumb = ""
        what = (r["source"] if r["kind"] == "gen" else Path(r["source"]).name) if r["state"] == "ok" else f"{r['state']}: {r['reason']}"
        out.append(f"<tr><td>{thumb}</td><td>{html.escape(r['kind'])}</td><td><code>{r['hash'][:12]}</code></td>"
                   f"<td>{html.escape(str(r['mode']))}</td><td>{html.escape(str(what))}</td>"
                   f"<td>{html.escape(str(r['created']))}</td><td>{_human(r['size'])}</td></tr>")
    more = f"<p>… and {len(rows) - limit} more (`ditflow cache ls`)</p>" if len(rows) > limit else ""
    return "".join(out) + "</table>" + more


def cache_tab(runner: Runner) -> dict:
    with gr.Row():
        refresh = gr.Button("Refresh", scale=0, min_width=100)
        pick = gr.Dropdown([], label="artifact", value=None, scale=3, elem_id="dtf-cache-pick")
        open_b = gr.Button("Open", scale=0, min_width=90)
        export_b = gr.Button("Export mp4", scale=0, min_width=110)
        delete_b = gr.Button("Delete…", variant="stop", scale=0, min_width=100, elem_id="dtf-delete")
    with gr.Row(visible=False) as confirm_row:
        confirm_md = gr.Markdown()
        force = gr.Checkbox(label="also if another artifact references it (--force)", value=False)
        confirm_b = gr.Button("Delete it", variant="stop", scale=0, min_width=100, elem_id="dtf-confirm-delete")
        keep_b = gr.Button("Keep it", scale=0, min_width=100)
    error = gr.Markdown(visible=False, elem_classes="dtf-error", elem_id="dtf-cache-error")
    status = gr.Markdown(elem_id="dtf-cache-status")
    download = gr.File(label="export", interactive=False, height=80)
    with gr.Row():
        video = gr.Video(label="video", interactive=False, loop=True, autoplay=True, elem_classes="dtf-pic", height=260)
        meta = gr.Code(label="metadata (cache show)", language="json", max_lines=14)
    table = gr.HTML(elem_classes="dtf-cache", elem_id="dtf-cache-table")

    def refresh_fn():
        choices = [(f"{r['hash'][:12]} · {r['kind']} · {r['source'] or r['mode']}", r["hash"]) for r in runner.rows()]
        return gr.update(choices=choices), cache_table(runner)

    def fail(e: Exception) -> dict:
        return gr.update(value=runner.message(e), visible=True)

    def open_fn(h):
        from ..artifacts import load

        try:
            art = load(runner.store, h or "")
            shown = str(media.video_file(art, runner.work)) if art.kind in ("amf", "gen") else None
            meta_text = dict(art.meta)
            if len(meta_text.get("losses", [])) > 20:
                meta_text["losses"] = f"{len(meta_text['losses'])} entries (see the loss plot)"
            return shown, json.dumps(meta_text, indent=1), gr.update(visible=False)
        except Exception as e:  # one line on the page
            return None, "", fail(e)

    def export_fn(h):
        from ..artifacts import load
        from ..cli.cache import _video_artifact

        try:
            return str(media.export_file(_video_artifact(load(runner.store, h or "")), runner.work)), gr.update(visible=False)
        except Exception as e:  # one line on the page
            return None, fail(e)

    def ask(h):
        if not h:
            return gr.update(visible=False), "", gr.update(value="error: pick an artifact to delete", visible=True)
        return gr.update(visible=True), f"Delete **`{h[:12]}`** from the cache? This cannot be undone.", gr.update(visible=False)

    def delete(h, forced):
        try:
            removed = runner.store.remove([h], force=forced)
            choices, table_html = refresh_fn()
            return (gr.update(visible=False), f"deleted `{removed[0]}`", gr.update(visible=False), choices, table_html,
                    gr.update(value=None))
        except Exception as e:  # the store's rule (a referenced artifact needs --force) as its one line
            return gr.update(visible=False), "", fail(e), gr.update(), gr.update(), gr.update()

    refresh.click(refresh_fn, None, [pick, table])
    open_b.click(open_fn, pick, [video, meta, error])
    export_b.click(export_fn, pick, [download, error])
    delete_b.click(ask, pick, [confirm_row, confirm_md, error])
    keep_b.click(lambda: gr.update(visible=False), None, confirm_row)
    confirm_b.click(delete, [pick, force], [confirm_row, status, error, pick, table, video])
    return {"refresh_fn": refresh_fn, "refresh_outputs": [pick, table]}


# -- 5 batch -------------------------------------------------------------------------------------------------
def batch_tab(runner: Runner) -> None:
    gr.Markdown("Load the results file of `ditflow batch` (--json-out or --csv): its report, as `ditflow report "
                "--html` writes it, with thumbnails from this page's cache (`ditflow report` on this machine reads "
                "the cache a batch recorded).")
    results = gr.File(label="results (.json, .csv)", file_types=[".json", ".csv"], type="filepath", height=120)
    error = gr.Markdown(visible=False, elem_classes="dtf-error")
    frame = gr.HTML(elem_id="dtf-report")

    def show(path):
        if not path:
            return "", gr.update(visible=False)
        try:
            page_html = runner.report(path)
        except Exception as e:  # one line on the page
            return "", gr.update(value=runner.message(e), visible=True)
        # the report is a page of its own (its CSS): an iframe keeps it and the page's apart
        return (f"<iframe id='dtf-report-frame' title='batch report' style='width:100%;height:900px;border:1px solid #ddd' "
                f"srcdoc='{html.escape(page_html, quote=True)}'></iframe>", gr.update(visible=False))

    results.change(show, results, [frame, error])
