"""The report page's inline SVG plots, each ok row a dot coloured by its setup:

- MF against CLIP score (MF per setup when no row has a CLIP score);
- MF against seconds per video, each setup's mean a ring: the quality-per-minute view the papers argue about.

Nothing external: the font is set on each svg, so a plot reads the same outside the page's CSS."""
from __future__ import annotations

import html
from typing import Any, Callable

import numpy as np

E = html.escape
W, H = 520, 320
LEFT, RIGHT, TOP = 50, 130, 12


def plot(rows: list[dict[str, Any]], colour: dict[str, str], w: int = W, h: int = H) -> str:
    """SVG: each ok row a dot at (CLIP score, MF), coloured by setup; without CLIP scores, MF per setup."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("motion_fidelity") is not None]
    if not ok:
        return "<p class='note'>No motion fidelity to plot.</p>"
    with_clip = [r for r in ok if r.get("clip_score") is not None]
    setups = [s for s in colour if any(str(r.get("setup")) == s for r in ok)]
    if with_clip:
        x0, x1 = _span([float(r["clip_score"]) for r in with_clip])
        return _scatter(with_clip, colour, setups, "CLIP score", lambda r: float(r["clip_score"]), (x0, x1), w, h)
    # setup names stand slanted under their column (they would overlap side by side)
    bottom = 36 + int(3.6 * max(len(s) for s in setups))
    return _scatter(ok, colour, setups, "setup", lambda r: setups.index(str(r.get("setup"))), None, w, h, bottom) + \
        "<p class='note'>No row has a CLIP score (see the notes), so MF is drawn per setup.</p>"


def speed_plot(rows: list[dict[str, Any]], colour: dict[str, str], w: int = W, h: int = H) -> str:
    """SVG: each ok row a dot at (seconds per video, MF), each setup's mean a ring: quality per minute."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("motion_fidelity") is not None
          and r.get("seconds") is not None]
    if not ok:
        return "<p class='note'>No row has both MF and seconds per video (a row served whole from an older cache " \
               "has no seconds) to plot against.</p>"
    setups = [s for s in colour if any(str(r.get("setup")) == s for r in ok)]
    x0, x1 = _span([float(r["seconds"]) for r in ok])
    means = []
    for s in setups:  # one ring per setup at (mean seconds, mean MF)
        mine = [r for r in ok if str(r.get("setup")) == s]
        means.append({"setup": s, "seconds": float(np.mean([float(r["seconds"]) for r in mine])),
                      "motion_fidelity": float(np.mean([float(r["motion_fidelity"]) for r in mine])), "mean": len(mine)})
    return _scatter(ok + means, colour, setups, "seconds per video", lambda r: float(r["seconds"]), (x0, x1), w, h)


def _scatter(points: list[dict[str, Any]], colour: dict[str, str], setups: list[str], xlabel: str,
             x_of: Callable[[dict[str, Any]], float], x_span: tuple[float, float] | None, w: int, h: int,
             bottom: int = 40) -> str:
    """Dots at (x_of(row), MF), on a numeric x axis over `x_span`, or one column per setup (x_of: its index)
    when x_span is None; a point with a "mean" key (the number of rows) is drawn as a ring."""
    y0, y1 = _span([float(r["motion_fidelity"]) for r in points])
    inner_w, inner_h = w - LEFT - RIGHT, h - TOP - bottom

    def ys(v: float) -> float:
        return TOP + inner_h * (1 - (v - y0) / (y1 - y0))

    if x_span is not None:
        x0, x1 = x_span

        def xs(v: float) -> float:
            return LEFT + inner_w * (v - x0) / (x1 - x0)

        ticks = [f"<text x='{xs(v):.1f}' y='{h - bottom + 14}' text-anchor='middle'>{E(_label(v, x0, x1))}</text>"
                 for v in _ticks(x0, x1)]
    else:
        step = inner_w / max(len(setups), 1)

        def xs(v: float) -> float:
            return LEFT + step * (v + 0.5)

        ticks = [f"<text x='{xs(i):.1f}' y='{h - bottom + 12}' text-anchor='end' transform='rotate(-35 {xs(i):.1f} "
                 f"{h - bottom + 12})'>{E(s)}</text>" for i, s in enumerate(setups)]
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-size='11' font-family='sans-serif' "
           f"role='img' aria-label='MF against {E(xlabel)}'>",
           f"<rect x='{LEFT}' y='{TOP}' width='{inner_w}' height='{inner_h}' fill='none' stroke='#999'/>",
           f"<text x='{(w - RIGHT + LEFT) / 2}' y='{h - 6}' text-anchor='middle'>{E(xlabel)}</text>",
           f"<text x='12' y='{(h - bottom + TOP) / 2}' transform='rotate(-90 12 {(h - bottom + TOP) / 2})' "
           f"text-anchor='middle'>MF</text>"]
    for v in _ticks(y0, y1):  # gridlines and labels at round values
        svg.append(f"<line x1='{LEFT}' x2='{w - RIGHT}' y1='{ys(v):.1f}' y2='{ys(v):.1f}' stroke='#eee'/>"
                   f"<text x='{LEFT - 4}' y='{ys(v) + 4:.1f}' text-anchor='end'>{_label(v, y0, y1)}</text>")
    svg += ticks
    for r in points:
        c = colour.get(str(r.get("setup")), "#000")
        x, y = xs(x_of(r)), ys(float(r["motion_fidelity"]))
        if "mean" in r:
            svg.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='8' fill='none' stroke='{c}' stroke-width='2'>"
                       f"<title>{E(str(r['setup']))}: mean of {r['mean']} run(s)</title></circle>")
        else:
            svg.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill='{c}' fill-opacity='0.75'>"
                       f"<title>{E(str(r.get('setup')))}: {E(str(r.get('video')))}</title></circle>")
    for i, s in enumerate(setups):  # the legend
        y = TOP + 14 + 16 * i
        svg.append(f"<circle cx='{w - RIGHT + 14}' cy='{y - 4}' r='4' fill='{colour[s]}'/>"
                   f"<text x='{w - RIGHT + 22}' y='{y}'>{E(s)}</text>")
    svg.append("</svg>")
    return "".join(svg)


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
