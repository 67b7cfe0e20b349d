"""GPUs a plan's time is estimated on: their memory and published peaks (dense bf16 tensor-core FLOP/s with fp32
accumulation, and memory bandwidth), from the vendors' datasheets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    bf16_flops: float  # dense, per second
    bandwidth: float  # bytes per second


GPUS: dict[str, Gpu] = {g.name: g for g in (
    Gpu("h200", 141e9 / 2**30, 989e12, 4.8e12),
    Gpu("h100", 80e9 / 2**30, 989e12, 3.35e12),  # SXM
    Gpu("h100-pcie", 80e9 / 2**30, 756e12, 2.0e12),
    Gpu("a100-80gb", 80e9 / 2**30, 312e12, 2.039e12),
    Gpu("a100-40gb", 40e9 / 2**30, 312e12, 1.555e12),
    Gpu("l40s", 48e9 / 2**30, 362e12, 0.864e12),
    Gpu("a6000", 48e9 / 2**30, 155e12, 0.768e12),
    Gpu("5090", 32e9 / 2**30, 209.5e12, 1.792e12),
    Gpu("4090", 24e9 / 2**30, 165.2e12, 1.008e12),
    Gpu("3090", 24e9 / 2**30, 71e12, 0.936e12),
)}
