"""The peak memory of a generation, recorded in its gen artifact's meta beside its seconds (never in its hash).

GPU: `torch.cuda.max_memory_allocated` over the run, its counter reset right after the model loads (so the
weights are in it, as in the peers' tables). CPU: the process's peak resident memory above the loaded model:
VmHWM, reset to the current resident size through /proc/self/clear_refs right after the model loads, less
VmRSS then (what the run itself held on top of the weights). None where the kernel offers neither file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

CUDA = "cuda max_memory_allocated (the model included)"
CPU = "process peak resident memory above the loaded model (VmHWM - VmRSS)"


def resident(field: str) -> int:
    """Resident bytes of this process from /proc/self/status: now (VmRSS) or at its peak (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


class PeakMemory:
    """`start()` right after the model loads, `result()` when the run ends: {"mb": float | None, "measure": str}."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.cuda = getattr(device, "type", str(device)).startswith("cuda")
        self.base: int | None = None

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.base = resident("VmRSS")
        except OSError:  # not Linux, or no permission: no figure rather than a wrong one (a peak of earlier runs)
            self.base = None

    def result(self) -> dict[str, Any]:
        if self.cuda:
            import torch

            return {"mb": torch.cuda.max_memory_allocated(self.device) / 2**20, "measure": CUDA}
        if self.base is None:
            return {"mb": None, "measure": "unavailable: no /proc/self/clear_refs to reset the peak"}
        try:
            return {"mb": max(0, resident("VmHWM") - self.base) / 2**20, "measure": CPU}
        except OSError:
            return {"mb": None, "measure": "unavailable: no VmHWM in /proc/self/status"}
