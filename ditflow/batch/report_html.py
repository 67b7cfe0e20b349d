"""The report as one self-contained HTML page: inline CSS, per model the table and two inline SVG plots (MF
against CLIP score, or MF per setup when no row has a CLIP score; MF against seconds per video: report_svg.py),
and each row's thumbnail strip (reference | generated frames, base64 PNGs read from the cache by the rows'
hashes). Nothing is fetched from outside."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from .report import LEGEND, columns, fmt, image_label, missing_reasons, model_rows, setup_order, summarise
from .report_svg import plot, speed_plot

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.note{color:#666;font-size:90%}
.strip{margin:10px 0}.strip img{image-rendering:pixelated;border:1px solid #ddd;vertical-align:middle}
.strip .label{font-size:90%;margin-bottom:2px}.failed{color:#b00}svg text{font-size:11px;font-family:sans-serif}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}"""
E = html.escape


def page(results: list[dict[str, Any]], store=None, frames: int = 4, height: int = 64) -> str:
    """The HTML page of `results`; thumbnails from `store` (None: left out)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>ditflow report</title>",
             f"<style>{CSS}</style></head><body><h1>ditflow batch report</h1>"]
    summary = summarise(results)
    setups = setup_order({str(r.get("setup")) for r in results})
    colour = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(setups)}
    for model, table in summary.items():
        rows = model_rows(results, model)
        shown = columns(rows)
        parts.append(f"<h2>{E(model)}</h2><table><tr><th>setup</th><th>runs</th>"
                     + "".join(f"<th>{E(h)}</th>" for _, h, _ in shown) + "</tr>")
        for row in table:
            runs = f"{row.ok}" + (f" <span class='failed'>(+{row.failed} failed)</span>" if row.failed else "")
            parts.append(f"<tr><td><span style='color:{colour[row.setup]}'>&#9679;</span> {E(row.setup)}</td><td>{runs}</td>"
                         + "".join(f"<td>{E(fmt(row.stats[k], d))}</td>" for k, _, d in shown) + "</tr>")
        parts.append("</table>")
        parts.append(f"<div class='plots'><div>{plot(rows, colour)}</div><div>{speed_plot(rows, colour)}</div></div>")
    parts.append(f"<p class='note'>{E(LEGEND)}</p>")
    reasons = missing_reasons(results)
    if reasons:
        parts.append("<p class='note'>Notes:</p><ul class='note'>" + "".join(f"<li>{E(n)}</li>" for n in reasons) + "</ul>")
    parts.append("<h2>Runs</h2>")
    parts += [strip(r, store, frames, height) for r in results]
    parts.append("</body></html>")
    return "\n".join(parts)


def strip(row: dict[str, Any], store, frames: int, height: int) -> str:
    """One row's label and its reference | generated thumbnails (or why there are none)."""
    label = (f"row {E(str(row.get('row')))}: {E(str(row.get('video')))}{E(image_label(row))} | <b>{E(str(row.get('setup')))}</b> | seed "
             f"{E(str(row.get('seed')))} | “{E(str(row.get('prompt')))}”")
    if row.get("status") != "ok":
        return f"<div class='strip'><div class='label'>{label}</div><div class='failed'>failed: {E(str(row.get('error')))}</div></div>"
    label += f" | MF {E(fmt_value(row.get('motion_fidelity')))}"
    image = thumbnails(store, row.get("amf"), row.get("gen"), frames, height) if store is not None else None
    body = (f"<img alt='reference | generated' src='data:image/png;base64,{image}'>" if image else
            "<span class='note'>artifacts not in this cache (pass --cache)</span>")
    return f"<div class='strip'><div class='label'>{label}</div>{body}</div>"


def fmt_value(v: Any) -> str:
    return "—" if v is None else f"{float(v):.3f}"


def thumbnails(store, amf_hash: str | None, gen_hash: str | None, frames: int, height: int) -> str | None:
    """Base64 PNG: `frames` reference frames, a gap, the same frames of the generation; None if either is missing."""
    from ..artifacts import load
    from ..errors import DitflowError

    if not amf_hash or not gen_hash:
        return None
    try:
        ref, gen = load(store, amf_hash, "amf").frames, load(store, gen_hash, "gen").frames
    except DitflowError:
        return None
    picks = np.linspace(0, min(len(ref), len(gen)) - 1, num=frames).round().astype(int)
    tiles = [_resize(f, height) for f in ref[picks]]
    tiles.append(np.full((height, 6, 3), 255, np.uint8))
    tiles += [_resize(f, height) for f in gen[picks]]
    return _png(np.concatenate(tiles, axis=1))


def _resize(frame: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.NEAREST if frame.shape[0] < height else Image.BILINEAR))


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()
