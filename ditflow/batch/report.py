"""The paper's table from a batch's results: per model, per setup (the rows), every metric (the columns): MF,
CLIP score, seconds per video and peak memory always, masked MF, temporal consistency and FTD where a row of
the model has them; each the mean over the ok rows with its 95% interval (Student's t). Missing values are left
out of a mean and counted; a column with no value at all says why (the rows' notes, e.g. CLIP weights missing)."""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any

from ..fileio import printable
from .setups import builtin_names

# (result column, header, decimals), in the table's order
METRICS = (("motion_fidelity", "MF", 3), ("mf_masked", "masked MF", 3), ("clip_score", "CLIP score", 3),
           ("temporal_consistency", "temporal consistency", 3), ("ftd", "FTD", 2), ("seconds", "s / video", 1),
           ("peak_memory_mb", "peak MB", 0))
ALWAYS = ("motion_fidelity", "clip_score", "seconds", "peak_memory_mb")  # shown even when empty: the notes say why
LEGEND = ("Mean over the ok runs ± the half-width of its 95% interval (Student's t); — : no value. s / video and peak "
          "MB: the generation (guide or inject) when it was computed; its peak memory is the GPU's max allocated (the "
          "model included), or on a CPU the peak resident memory above the loaded model. FTD: lower is closer.")
# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's 1.96
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Stat:
    mean: float | None
    half: float | None  # half-width of the 95% interval; None for fewer than two values
    n: int  # values the mean is over


def interval(values: list[float]) -> Stat:
    """Mean and 95% interval half-width of `values` (finite ones only)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Stat(None, None, 0)
    if len(vals) == 1:
        return Stat(vals[0], None, 1)
    t = _T95[len(vals) - 2] if len(vals) - 1 <= len(_T95) else 1.96
    return Stat(statistics.fmean(vals), t * statistics.stdev(vals) / math.sqrt(len(vals)), len(vals))


@dataclass
class SetupRow:
    setup: str
    ok: int
    failed: int
    stats: dict[str, Stat]


def setup_order(names: set[str]) -> list[str]:
    """The paper's setups in its order, the other built-in ones (the methods after it), then a user's by name."""
    paper = ("backbone", "injection", "smm", "moft", "ditflow-latent", "ditflow-emb", "inject")
    known = [n for n in (*paper, *builtin_names()) if n in names]
    return list(dict.fromkeys(known)) + sorted(names - set(builtin_names()))


def model_rows(results: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [r for r in results if str(r.get("model") or "?") == model]


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The metrics a model's table shows: ALWAYS, and each other one some row of `rows` has a value of."""
    return [m for m in METRICS if m[0] in ALWAYS or any(r.get(m[0]) is not None for r in rows)]


def summarise(results: list[dict[str, Any]]) -> dict[str, list[SetupRow]]:
    """{model: [one SetupRow per setup]}."""
    out: dict[str, list[SetupRow]] = {}
    for model in dict.fromkeys(str(r.get("model") or "?") for r in results):
        rows = model_rows(results, model)
        table = []
        for setup in setup_order({str(r.get("setup")) for r in rows}):
            mine = [r for r in rows if str(r.get("setup")) == setup]
            ok = [r for r in mine if r.get("status") == "ok"]
            table.append(SetupRow(setup, len(ok), len(mine) - len(ok),
                                  {k: interval([r.get(k) for r in ok]) for k, _, _ in METRICS}))
        out[model] = table
    return out


def fmt(stat: Stat, digits: int) -> str:
    if stat.mean is None:
        return "—"
    text = f"{stat.mean:.{digits}f}"
    return text + (f" ± {stat.half:.{digits}f}" if stat.half is not None else "")


def missing_reasons(results: list[dict[str, Any]]) -> list[str]:
    """Each distinct note of the ok rows once (why a score is missing or doubtful)."""
    notes = [n.strip() for r in results if r.get("status") == "ok" for n in str(r.get("notes") or "").split("; ") if n.strip()]
    return list(dict.fromkeys(notes))


# In a user's text (a prompt, a file name, an error): a backslash, a table's `|` and the characters of raw HTML
# are escaped, a line break is a <br>, and any other control character is shown as printable() shows it
_MD_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;"})
_MD_BREAK = re.compile("\r\n|[\n\r\u2028\u2029]")


def md_text(value: Any) -> str:
    """`value` as Markdown text that renders as itself, on one line, and leaves a table's cells intact."""
    text = str(value).translate(_MD_SPECIAL)
    return printable(_MD_BREAK.sub("<br>", text))


def image_label(row: dict[str, Any]) -> str:
    """What follows a row's video where a report lists it: the picture an image-to-video row animates, its fit
    and the first 12 digits of its fitted pixels' digest (as `cache ls` shortens hashes); "" for text-to-video."""
    if not row.get("image"):
        return ""
    digest = f" {row['image_digest'][:12]}" if row.get("image_digest") else ""
    return f" + image {row['image']} ({row.get('image_fit') or 'crop'}{digest})"


def markdown(results: list[dict[str, Any]]) -> str:
    """One Markdown table per model, with the failures and missing-value reasons under it."""
    lines = []
    for model, table in summarise(results).items():
        shown = columns(model_rows(results, model))
        lines += [f"## {md_text(model)}", "", "| setup | runs | " + " | ".join(h for _, h, _ in shown) + " |",
                  "|---|---|" + "---|" * len(shown)]
        for row in table:
            runs = f"{row.ok}" + (f" (+{row.failed} failed)" if row.failed else "")
            lines.append(f"| {md_text(row.setup)} | {runs} | " + " | ".join(fmt(row.stats[k], d) for k, _, d in shown) + " |")
        lines.append("")
    lines.append(LEGEND)
    failed = [r for r in results if r.get("status") != "ok"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s):"]
        lines += [f"- row {r.get('row')}: {md_text(r.get('video'))}{md_text(image_label(r))} | “{md_text(r.get('prompt'))}” | "
                  f"{md_text(r.get('setup'))} | seed {r.get('seed')}: {md_text(r.get('error'))}" for r in failed]
    reasons = missing_reasons(results)
    if reasons:
        lines += ["", "Notes:"] + [f"- {md_text(n)}" for n in reasons]
    return "\n".join(lines) + "\n"
