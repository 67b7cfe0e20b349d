"""The report as one self-contained HTML page: inline CSS, the table, an inline SVG plot of MF against CLIP
score per setup (MF per setup alone when no row has a CLIP score) and each row's thumbnail strip (reference |
generated frames, base64 PNGs read from the cache by the rows' hashes). Nothing is fetched from outside."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from .report import METRICS, fmt, image_label, missing_reasons, setup_order, summarise

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.note{color:#666;font-size:90%}
.strip{margin:10px 0}.strip img{image-rendering:pixelated;border:1px solid #ddd;vertical-align:middle}
.strip .label{font-size:90%;margin-bottom:2px}.failed{color:#b00}svg text{font-size:11px;font-family:sans-serif}"""
E = html.escape


def page(results: list[dict[str, Any]], store=None, frames: int = 4, height: int = 64) -> str:
    """The HTML page of `results`; thumbnails from `store` (None: left out)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>ditflow report</title>",
             f"<style>{CSS}</style></head><body><h1>ditflow batch report</h1>"]
    summary = summarise(results)
    setups = setup_order({str(r.get("setup")) for r in results})
    colour = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(setups)}
    for model, table in summary.items():
        parts.append(f"<h2>{E(model)}</h2><table><tr><th>setup</th><th>runs</th>"
                     + "".join(f"<th>{E(h)}</th>" for _, h, _ in METRICS) + "</tr>")
        for row in table:
            runs = f"{row.ok}" + (f" <span class='failed'>(+{row.failed} failed)</span>" if row.failed else "")
            parts.append(f"<tr><td><span style='color:{colour[row.setup]}'>&#9679;</span> {E(row.setup)}</td><td>{runs}</td>"
                         + "".join(f"<td>{E(fmt(row.stats[k], d))}</td>" for k, _, d in METRICS) + "</tr>")
        parts.append("</table>")
        parts.append(plot([r for r in results if str(r.get("model") or "?") == model], colour))
    parts.append("<p class='note'>Mean over the ok runs ± the half-width of its 95% interval (Student's t); — : no "
                 "value. s / video: the generation (guide or inject) when it was computed.</p>")
    reasons = missing_reasons(results)
    if reasons:
        parts.append("<p class='note'>Notes:</p><ul class='note'>" + "".join(f"<li>{E(n)}</li>" for n in reasons) + "</ul>")
    parts.append("<h2>Runs</h2>")
    parts += [strip(r, store, frames, height) for r in results]
    parts.append("</body></html>")
    return "\n".join(parts)


def plot(rows: list[dict[str, Any]], colour: dict[str, str], w: int = 520, h: int = 320) -> str:
    """SVG: each ok row a dot at (CLIP score, MF), coloured by setup; without CLIP scores, MF per setup."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("motion_fidelity") is not None]
    if not ok:
        return "<p class='note'>No motion fidelity to plot.</p>"
    with_clip = [r for r in ok if r.get("clip_score") is not None]
    setups = [s for s in colour if any(str(r.get("setup")) == s for r in ok)]
    # setup names stand slanted under their column (they would overlap side by side)
    left, right, top, bottom = 50, 130, 12, 40 if with_clip else 36 + int(3.6 * max(len(s) for s in setups))
    mf = [float(r["motion_fidelity"]) for r in ok]
    y0, y1 = _span(mf)

    def ys(v: float) -> float:
        return top + (h - top - bottom) * (1 - (v - y0) / (y1 - y0))

    if with_clip:
        clip = [float(r["clip_score"]) for r in with_clip]
        x0, x1 = _span(clip)
        xs = {id(r): left + (w - left - right) * (float(r["clip_score"]) - x0) / (x1 - x0) for r in with_clip}
        points, xlabel = with_clip, "CLIP score"
        ticks = [(left + (w - left - right) * (v - x0) / (x1 - x0), _label(v, x0, x1)) for v in _ticks(x0, x1)]
        note = ""
    else:
        step = (w - left - right) / max(len(setups), 1)
        xs = {id(r): left + step * (setups.index(str(r.get("setup"))) + 0.5) for r in ok}
        points, xlabel, ticks = ok, "setup", [(left + step * (i + 0.5), s) for i, s in enumerate(setups)]
        note = "<p class='note'>No row has a CLIP score (see the notes), so MF is drawn per setup.</p>"
    # the font is set on the svg itself, so the plot reads the same outside this page's CSS
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-size='11' font-family='sans-serif' "
           f"role='img' aria-label='MF against {xlabel}'>",
           f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' fill='none' stroke='#999'/>",
           f"<text x='{(w - right + left) / 2}' y='{h - 6}' text-anchor='middle'>{E(xlabel)}</text>",
           f"<text x='12' y='{(h - bottom + top) / 2}' transform='rotate(-90 12 {(h - bottom + top) / 2})' text-anchor='middle'>MF</text>"]
    for v in _ticks(y0, y1):  # gridlines and labels at round values
        svg.append(f"<line x1='{left}' x2='{w - right}' y1='{ys(v):.1f}' y2='{ys(v):.1f}' stroke='#eee'/>"
                   f"<text x='{left - 4}' y='{ys(v) + 4:.1f}' text-anchor='end'>{_label(v, y0, y1)}</text>")
    if with_clip:
        svg += [f"<text x='{x:.1f}' y='{h - bottom + 14}' text-anchor='middle'>{E(t)}</text>" for x, t in ticks]
    else:
        svg += [f"<text x='{x:.1f}' y='{h - bottom + 12}' text-anchor='end' transform='rotate(-35 {x:.1f} {h - bottom + 12})'>"
                f"{E(t)}</text>" for x, t in ticks]
    for r in points:
        c = colour.get(str(r.get("setup")), "#000")
        svg.append(f"<circle cx='{xs[id(r)]:.1f}' cy='{ys(float(r['motion_fidelity'])):.1f}' r='4' fill='{c}' "
                   f"fill-opacity='0.75'><title>{E(str(r.get('setup')))}: {E(str(r.get('video')))}</title></circle>")
    for i, s in enumerate(setups):  # the legend
        y = top + 14 + 16 * i
        svg.append(f"<circle cx='{w - right + 14}' cy='{y - 4}' r='4' fill='{colour[s]}'/>"
                   f"<text x='{w - right + 22}' y='{y}'>{E(s)}</text>")
    svg.append("</svg>")
    return "".join(svg) + note


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round values (steps of 1, 2 or 5 times a power of ten) inside [lo, hi]."""
    raw = (hi - lo) / n
    power = 10 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(first, hi + step * 1e-9, step)]


def _label(v: float, lo: float, hi: float) -> str:
    """A tick value with the decimals its step needs (0.2 steps: 0.4; 0.005 steps: 0.245)."""
    ticks = _ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else hi - lo
    return f"{v:.{max(0, int(-np.floor(np.log10(step) + 1e-9)))}f}"


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.01)
    return lo - pad, hi + pad


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
