"""Benchmark: Attention Motion Flow, paper-style reference ("plain") vs ditflow.amf ("ditflow").

    python benchmarks/bench_amf.py [--out bench-results/amf.json] [--quick]

Every (variant, pass, shape) point runs in its own child process (this script with --worker), so that its
peak memory is its own: the child's ru_maxrss high-water mark at the end, minus the high-water mark taken
after imports and after the inputs exist. Each child gets an address-space limit (RLIMIT_AS: its size after
imports plus --mem-limit-gib) so a point that does not fit fails cleanly ("OOM") instead of exhausting the
machine; a child that runs past --timeout is killed and reported as "timeout".

Passes: "fwd" is the soft AMF under no_grad; "fwd+bwd" is the soft AMF, the project's thresholded AMF loss
(ditflow.losses.amf_loss, MSE to a fixed argmax reference AMF where that is non-zero) and its backward to
q and k. The reference AMF comes from a separate random "reference video" and is computed (with
ditflow.amf, identical to plain's argmax: see tests/test_amf.py) before the baseline is taken.

Sections:
  (a) CogVideoX-2B paper shape: 6 latent frames of 30x45 patches (N = 8100), 30 heads x 64, float32;
      fwd and fwd+bwd, both variants. If plain cannot run there, both variants are re-run at fewer frames,
      and the output says so.
  (b) sweep over 2..13 latent frames at CogVideoX-5B's layout (48 heads x 64, 30x45 patches, N up to
      17,550), fwd+bwd; plain is not tried again at larger frame counts once it has failed.
Time is the median of up to --repeats timed runs after one warm-up run (fewer when a point's runs exceed
--budget-s; the JSON records how many). Inputs are random: the work does not depend on the values.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "@@AMF_BENCH_RESULT "

PAPER_2B = dict(heads=30, head_dim=64, frames=6, h=30, w=45)
SWEEP_5B = dict(heads=48, head_dim=64, h=30, w=45)
SWEEP_FRAMES = list(range(2, 14))
QUICK_OURS_FRAMES = [2, 4, 13]
QUICK_PLAIN_FRAMES = [2]
SCALED_FRAMES = [4, 3, 2]  # (a) fallback when plain cannot run at 6 frames
TEMPERATURE = 2.0

# targets from the task; checked and reported, never adjusted
TARGET_SPEEDUP = 2.0
TARGET_MEM_RATIO = 5.0
TARGET_13F_BYTES = 6e9  # 6 GB


def _import_project():
    try:
        import ditflow  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------------------------- worker


def _maxrss_bytes() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib * 1024 if sys.platform != "darwin" else kib


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return any(s in msg for s in ("can't allocate memory", "cannot allocate memory", "out of memory", "bad_alloc"))


def worker(args: argparse.Namespace) -> None:
    result: dict = {"status": "ok", "loadavg_start": os.getloadavg()}
    try:
        # if the machine runs out of memory anyway, the kernel should kill this child, not someone's shell
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass
    try:
        _import_project()
        import torch

        from ditflow.amf import attention_motion_flow
        from ditflow.amf.reference import plain_attention_motion_flow
        from ditflow.losses import amf_loss

        result["threads"] = torch.get_num_threads()
        torch.zeros(64, 64) @ torch.zeros(64, 64)  # start the thread pool before measuring the address space
        if args.mem_limit_gib > 0:
            # torch's libraries alone map several GiB of address space that is never resident, so the limit
            # is what the child may add to its address space after the imports
            limit = _vm_size_bytes() + int(args.mem_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result["rlimit_as_gib"] = limit / 2**30
        f, h, w, heads, d = args.frames, args.h, args.w, args.heads, args.head_dim
        grid, n = (f, h, w), args.frames * args.h * args.w
        gen = torch.Generator().manual_seed(0)

        ref = None
        if args.pass_ == "fwd+bwd":
            # the reference video's AMF, made and its q/k freed before the measured q/k exist, with small
            # chunks so it does not raise the high-water mark above what the inputs alone reach
            qr, kr = torch.randn(heads, n, d, generator=gen), torch.randn(heads, n, d, generator=gen)
            ref = attention_motion_flow(qr, kr, grid, mode="argmax", chunk=256)
            del qr, kr
        q, k = torch.randn(heads, n, d, generator=gen), torch.randn(heads, n, d, generator=gen)
        if args.variant == "plain":
            def amf(q, k):
                return plain_attention_motion_flow(q, k, grid, temperature=TEMPERATURE, mode="soft")
        else:
            def amf(q, k):
                return attention_motion_flow(q, k, grid, temperature=TEMPERATURE, mode="soft")

        if args.pass_ == "fwd+bwd":
            q.requires_grad_(True)
            k.requires_grad_(True)

            def step():
                q.grad = k.grad = None
                loss = amf_loss(amf(q, k), ref, threshold=True)
                loss.backward()
                return loss.item()
        else:
            def step():
                with torch.no_grad():
                    out = amf(q, k)
                return float(out.abs().mean())

        baseline = _maxrss_bytes()
        result["baseline_mib"] = baseline / 2**20
        t0 = time.perf_counter()
        result["check_value"] = step()  # warm-up
        result["warmup_s"] = time.perf_counter() - t0
        times: list[float] = []
        cpu_times: list[float] = []  # process CPU seconds (all threads): less sensitive to other load
        while len(times) < args.repeats:
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            if sum(times) + result["warmup_s"] > args.budget_s:
                break
        peak = _maxrss_bytes()
        result.update(
            times_s=times,
            median_s=statistics.median(times),
            cpu_times_s=cpu_times,
            median_cpu_s=statistics.median(cpu_times),
            loadavg_end=os.getloadavg(),
            peak_mib=(peak - baseline) / 2**20,
            rss_peak_mib=peak / 2**20,
        )
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        result = {"status": "OOM" if _is_oom(exc) else "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------- parent


def run_point(variant: str, pass_: str, shape: dict, opts: argparse.Namespace, log) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker",
        "--variant", variant, "--pass", pass_,
        "--frames", str(shape["frames"]), "--h", str(shape["h"]), "--w", str(shape["w"]),
        "--heads", str(shape["heads"]), "--head-dim", str(shape["head_dim"]),
        "--repeats", str(opts.repeats), "--budget-s", str(opts.budget_s),
        "--mem-limit-gib", str(opts.mem_limit_gib),
    ]
    n = shape["frames"] * shape["h"] * shape["w"]
    point = dict(variant=variant, pass_=pass_, **shape, N=n)
    log(f"{variant:>7} {pass_:<7} frames={shape['frames']:>2} heads={shape['heads']} N={n:>6} ... ")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        point.update(status="timeout", error=f"killed after {opts.timeout} s")
    else:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
        if lines:
            point.update(json.loads(lines[-1][len(RESULT_TAG):]))
        elif proc.returncode < 0 and proc.returncode in (-9,):
            point.update(status="OOM", error="killed by SIGKILL (out of memory)")
        elif "bad_alloc" in proc.stderr or "allocate memory" in proc.stderr:
            point.update(status="OOM", error=proc.stderr.strip()[-500:])
        else:
            point.update(status="error", error=f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    point["wall_s"] = time.perf_counter() - t0
    if point["status"] == "ok":
        log(f"    {point['median_s']:.2f} s, {point['peak_mib']:.0f} MiB ({len(point['times_s'])} runs)\n")
    else:
        log(f"    {point['status']}: {point.get('error', '')[:120]}\n")
    return point


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    import torch

    info.update(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        mkl=torch.backends.mkl.is_available(),
    )
    return info


def _ratio(plain: dict | None, ours: dict | None, key: str) -> float | None:
    if not plain or not ours or plain.get("status") != "ok" or ours.get("status") != "ok":
        return None
    return plain[key] / ours[key] if ours[key] > 0 else None


def _fmt_time(p: dict | None) -> str:
    if p is None:
        return "skipped"
    return f"{p['median_s']:.2f}" if p["status"] == "ok" else p["status"]


def _fmt_mem(p: dict | None) -> str:
    if p is None:
        return "skipped"
    return f"{p['peak_mib']:,.0f}" if p["status"] == "ok" else p["status"]


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


COLUMNS = ("plain s", "ditflow s", "speed-up", "CPU ratio", "plain MiB", "ditflow MiB", "mem ratio")


def _cells(pl: dict | None, ou: dict | None) -> list[str]:
    return [_fmt_time(pl), _fmt_time(ou), _fmt_ratio(_ratio(pl, ou, "median_s")),
            _fmt_ratio(_ratio(pl, ou, "median_cpu_s")), _fmt_mem(pl), _fmt_mem(ou),
            _fmt_ratio(_ratio(pl, ou, "peak_mib"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "amf.json", help="JSON results file")
    ap.add_argument("--quick", action="store_true",
                    help=f"(a) fwd+bwd only; sweep frames {QUICK_OURS_FRAMES} (ditflow), {QUICK_PLAIN_FRAMES} (plain)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per point after the warm-up, at most (default 3; 1 with --quick)")
    ap.add_argument("--budget-s", type=float, default=30.0,
                    help="stop timing a point once warm-up + timed runs exceed this (at least one timed run)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a point's child is killed")
    ap.add_argument("--mem-limit-gib", type=float, default=18.0,
                    help="address space each child may add after its imports, set as its RLIMIT_AS (0: no limit)")
    # worker-only
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=["plain", "ditflow"], help=argparse.SUPPRESS)
    ap.add_argument("--pass", dest="pass_", choices=["fwd", "fwd+bwd"], help=argparse.SUPPRESS)
    for name in ("frames", "h", "w", "heads", "head-dim"):
        ap.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3

    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    _import_project()
    loadavg_start = os.getloadavg()
    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        console.out(msg, end="", highlight=False)

    points: list[dict] = []
    notes: list[str] = []

    # (a) paper shape, scaled down only if plain cannot run there
    layout_a = f"{PAPER_2B['heads']} heads x {PAPER_2B['head_dim']}, {PAPER_2B['h']}x{PAPER_2B['w']} patches"
    layout_b = f"{SWEEP_5B['heads']} heads x {SWEEP_5B['head_dim']}, {SWEEP_5B['h']}x{SWEEP_5B['w']} patches"
    console.rule(f"(a) CogVideoX-2B shape: {PAPER_2B['frames']} frames, {layout_a}")
    passes_a = ["fwd+bwd"] if args.quick else ["fwd", "fwd+bwd"]
    section_a: dict[str, dict[str, dict]] = {}
    for pass_ in passes_a:
        for frames in [PAPER_2B["frames"], *SCALED_FRAMES]:
            shape = dict(PAPER_2B, frames=frames)
            plain = run_point("plain", pass_, shape, args, log)
            ours = run_point("ditflow", pass_, shape, args, log)
            scaled = frames != PAPER_2B["frames"]
            for p in (plain, ours):
                p.update(section="a", scaled=scaled)
                points.append(p)
            section_a[pass_] = {"plain": plain, "ditflow": ours}
            if plain["status"] == "ok":
                if scaled:
                    notes.append(f"(a) {pass_}: plain could not run at {PAPER_2B['frames']} frames; "
                                 f"SCALED to {frames} frames (N={plain['N']}) for both variants")
                break

    # (b) 5B sweep
    console.rule(f"(b) CogVideoX-5B layout sweep: {layout_b}, fwd+bwd")
    ours_frames = QUICK_OURS_FRAMES if args.quick else SWEEP_FRAMES
    plain_frames = QUICK_PLAIN_FRAMES if args.quick else SWEEP_FRAMES
    sweep: dict[int, dict[str, dict | None]] = {}
    plain_failed_at = None
    for frames in sorted(set(ours_frames) | set(plain_frames)):
        shape = dict(SWEEP_5B, frames=frames)
        row: dict[str, dict | None] = {"plain": None, "ditflow": None}
        if frames in plain_frames and plain_failed_at is None:
            row["plain"] = run_point("plain", "fwd+bwd", shape, args, log)
            if row["plain"]["status"] != "ok":
                plain_failed_at = frames
                notes.append(f"(b) plain failed ({row['plain']['status']}) at {frames} frames "
                             f"(N={row['plain']['N']}); larger frame counts not tried")
        if frames in ours_frames:
            row["ditflow"] = run_point("ditflow", "fwd+bwd", shape, args, log)
        for p in row.values():
            if p is not None:
                p.update(section="b", scaled=False)
                points.append(p)
        sweep[frames] = row

    # tables
    console.print()
    ta = Table(title=f"(a) AMF, CogVideoX-2B shape ({layout_a} per frame), float32, CPU")
    for col in ("pass", "frames", "N", *COLUMNS):
        ta.add_column(col, justify="right")
    for pass_, row in section_a.items():
        pl, ou = row["plain"], row["ditflow"]
        ta.add_row(pass_, str(ou["frames"]) + (" (scaled)" if ou["scaled"] else ""), f"{ou['N']:,}", *_cells(pl, ou))
    console.print(ta)
    tb = Table(title=f"(b) AMF loss fwd+bwd, CogVideoX-5B layout ({layout_b} per frame), float32, CPU")
    for col in ("frames", "N", *COLUMNS):
        tb.add_column(col, justify="right")
    for frames, row in sweep.items():
        tb.add_row(str(frames), f"{frames * SWEEP_5B['h'] * SWEEP_5B['w']:,}", *_cells(row["plain"], row["ditflow"]))
    console.print(tb)
    console.print("s: median wall seconds after a warm-up; CPU ratio: the same ratio in process CPU seconds "
                  "(less sensitive to other load on the machine); "
                  "MiB: peak RSS growth over imports + inputs "
                  f"(ru_maxrss, one process per cell); each child may add {args.mem_limit_gib:g} GiB of address "
                  "space after its imports (RLIMIT_AS); ratios are plain / ditflow.", highlight=False)

    # targets
    targets = []
    fb = section_a.get("fwd+bwd", {})
    speedup = _ratio(fb.get("plain"), fb.get("ditflow"), "median_s")
    memratio = _ratio(fb.get("plain"), fb.get("ditflow"), "peak_mib")
    scaled_a = bool(fb.get("ditflow", {}).get("scaled"))
    targets.append(dict(name=f"(a) fwd+bwd speed-up >= {TARGET_SPEEDUP:g}x", value=speedup,
                        met=speedup is not None and speedup >= TARGET_SPEEDUP, scaled=scaled_a))
    targets.append(dict(name=f"(a) fwd+bwd peak memory ratio >= {TARGET_MEM_RATIO:g}x", value=memratio,
                        met=memratio is not None and memratio >= TARGET_MEM_RATIO, scaled=scaled_a))
    p13 = sweep.get(13, {}).get("ditflow")
    if p13 is not None:
        ok = p13["status"] == "ok"
        targets.append(dict(
            name="(b) 13 frames (N=17,550) fwd+bwd within 6 GB", met=ok and p13["rss_peak_mib"] * 2**20 <= TARGET_13F_BYTES,
            value=None if not ok else {"peak_over_inputs_GB": p13["peak_mib"] * 2**20 / 1e9,
                                       "process_rss_peak_GB": p13["rss_peak_mib"] * 2**20 / 1e9},
        ))
    console.print()
    for t in targets:
        v = t["value"]
        vs = (f"{v:.1f}x" if isinstance(v, float) else
              ", ".join(f"{k} {x:.2f}" for k, x in v.items()) if isinstance(v, dict) else "n/a")
        mark = "[green]met[/]" if t["met"] else "[red]MISSED[/]"
        console.print(f"target {t['name']}: {vs} -> {mark}" + (" (at the scaled shape)" if t.get("scaled") else ""))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")

    info = machine_info()
    info["loadavg_start"], info["loadavg_end"] = loadavg_start, os.getloadavg()
    report = {
        "benchmark": "attention_motion_flow: plain (ditflow.amf.reference) vs ditflow (ditflow.amf)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": started.isoformat(timespec="seconds"),
        "total_wall_s": time.perf_counter() - t_start,
        "quick": args.quick,
        "settings": {"repeats": args.repeats, "budget_s": args.budget_s, "timeout_s": args.timeout,
                     "mem_limit_gib": args.mem_limit_gib, "temperature": TEMPERATURE, "dtype": "float32",
                     "memory": "peak_mib = child ru_maxrss at end - ru_maxrss after imports and inputs"},
        "shapes": {"a": PAPER_2B, "b": {**SWEEP_5B, "frames": SWEEP_FRAMES if not args.quick else
                                        sorted(set(QUICK_OURS_FRAMES) | set(QUICK_PLAIN_FRAMES))}},
        "machine": info,
        "points": points,
        "targets": targets,
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out} ({report['total_wall_s']:.0f} s)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
