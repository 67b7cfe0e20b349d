"""RoPECraft's motion input: the reference's dense optical flow, brought to the token grid as a displacement of
each token's (row, column) position, computed once per AMF and settings and kept in the store as a `flow`
artifact (parent: the AMF).

The preprocessing is RoPECraft's (`CustomWanRotaryPosEmbed` in their generate.py), as pure functions:
1. flows between consecutive frames; of those, one per token frame at `linspace(0, P-1, F)` (single-frame
   flows, not summed over the frames a latent frame spans: theirs);
2. bilinear resize to the (h, w) token grid, values unchanged;
3. a Gaussian of `KERNEL` x `KERNEL` taps, sigma `flow_smoothing` in tokens, zero padding (theirs: 21, 11);
4. divided by the VAE's spatial factor (their `divisor=8` at 8x VAEs, 16 pixels a token, so a token moves by
   twice its pixel displacement in tokens; their comment shows 16 was tried);
5. accumulated over frames from frame 0 inclusive, each frame weighted min(1, 1 / (‖next − this‖ + 1e-6))
   (their "lookup norm", Frobenius norm over the whole map; weight 1 for the last frame).

Displacements are [F, 2, h, w]: channel 0 x (columns), channel 1 y (rows), as optical flow's (u, v).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

KERNEL = 21  # RoPECraft's Gaussian kernel size (`mu`)
LOOKUP_THRESHOLD = 1.0  # their lookup_norm_thr
FLOW_FORMAT = 1  # part of a flow artifact's hash
PAYLOAD = "flow.safetensors"
RAFT_CHUNK = 8  # frame pairs per RAFT batch
RAFT_MIN = 128  # the smallest side RAFT's correlation pyramid takes


# -------------------------------------------------------------------------------------- the dense flow
def dis_flows(frames: np.ndarray) -> "torch.Tensor":
    """uint8 [F, H, W, 3] -> [F-1, 2, H, W] float32 flows frame i -> i+1 in pixels (x, y): OpenCV's DIS
    (medium preset) on grey frames; no weights."""
    import cv2
    import torch

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)) for f in frames]
    flows = [dis.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])]  # each [H, W, 2]
    if not flows:
        return torch.zeros(0, 2, *frames.shape[1:3])
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).float().contiguous()


def raft_weights_file() -> Path:
    """Where torchvision keeps RAFT-small's weights (torch hub's checkpoints folder; $TORCH_HOME moves it)."""
    import torch
    from torchvision.models.optical_flow import Raft_Small_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(Raft_Small_Weights.DEFAULT.url).name


def check_raft_weights() -> Path:
    """The weights file, or one line saying which file is missing and how to get it (never downloaded here)."""
    try:
        path = raft_weights_file()
    except ImportError:
        raise ModelUnavailable("--flow raft needs torchvision (pip install torchvision), or use --flow dis")
    if not path.is_file():
        raise ModelUnavailable(
            f"--flow raft: RAFT-small's weights are not in the torch cache ({path} is missing); get them with "
            f"`python -c 'from torchvision.models.optical_flow import raft_small, Raft_Small_Weights as W; "
            f"raft_small(weights=W.DEFAULT)'`, or use --flow dis (no weights)")
    return path


def raft_flows(frames: np.ndarray, device) -> "torch.Tensor":
    """uint8 [F, H, W, 3] -> [F-1, 2, H, W] float32 flows i -> i+1 in pixels (x, y): torchvision's RAFT-small
    (12 updates, the last), frames in [-1, 1], as RoPECraft. H and W: multiples of 8; frames under RAFT_MIN
    pixels are upscaled by a whole factor first (its correlation pyramid needs them) and the flow scaled back."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.optical_flow import raft_small

    model = raft_small(weights=None, progress=False)
    model.load_state_dict(torch.load(check_raft_weights(), map_location="cpu", weights_only=True))
    model = model.eval().to(device)
    height, width = frames.shape[1:3]
    scale = max(1, math.ceil(RAFT_MIN / min(height, width)))
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    out = []
    with torch.no_grad():
        for s in range(0, len(video) - 1, RAFT_CHUNK):
            pair = video[s : s + RAFT_CHUNK + 1].to(device)
            if scale > 1:
                pair = F.interpolate(pair, scale_factor=scale, mode="bilinear", align_corners=False)
            flow = model(pair[:-1], pair[1:])[-1].float()
            if scale > 1:
                flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False) / scale
            out.append(flow.cpu())
    return torch.cat(out) if out else torch.zeros(0, 2, height, width)


def dense_flows(frames: np.ndarray, method: str, device) -> "torch.Tensor":
    """[F-1, 2, H, W] flows between consecutive frames by `method` (dis or raft)."""
    return raft_flows(frames, device) if method == "raft" else dis_flows(frames)


# ---------------------------------------------------------------------------------- the preprocessing
def grid_flows(flows: "torch.Tensor", grid: tuple[int, int, int]) -> "torch.Tensor":
    """[P, 2, H, W] pixel flows -> [F, 2, h, w]: the flows at linspace(0, P-1, F) (truncated), resized to the
    (h, w) token grid bilinearly; values stay in pixels. No flow (one frame): zeros."""
    import torch
    import torch.nn.functional as F

    f, h, w = grid
    if len(flows) == 0:
        return torch.zeros(f, 2, h, w)
    picked = flows[torch.linspace(0, len(flows) - 1, f).long()].float()
    return F.interpolate(picked, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_kernel(sigma: float, size: int = KERNEL) -> "torch.Tensor":
    """[size, size] normalised Gaussian of standard deviation `sigma` (taps at -size//2 .. size//2)."""
    import torch

    taps = torch.tensor([math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)], dtype=torch.float64)
    taps = taps / taps.sum()
    return (taps[:, None] * taps[None, :]).float()


def smooth(flows: "torch.Tensor", sigma: float, size: int = KERNEL) -> "torch.Tensor":
    """[F, 2, h, w] each map convolved with `gaussian_kernel`, zero padding (borders lose weight, as theirs);
    sigma 0: unchanged."""
    import torch.nn.functional as F

    if sigma <= 0:
        return flows
    kernel = gaussian_kernel(sigma, size).to(flows)[None, None]
    maps = flows.reshape(-1, 1, *flows.shape[-2:])
    return F.conv2d(maps, kernel, padding=size // 2).reshape(flows.shape)


def accumulate(flows: "torch.Tensor", threshold: float = LOOKUP_THRESHOLD, eps: float = 1e-6) -> "torch.Tensor":
    """[F, 2, h, w] -> the running sum over frames, frame 0 included, each frame weighted
    min(1, threshold / (‖flow[t+1] − flow[t]‖ + eps)) (the whole two-channel map's norm; the last frame 1)."""
    import torch

    change = (flows[1:] - flows[:-1]).flatten(1).norm(dim=1)
    weights = torch.clamp(threshold / (torch.cat([change, change.new_zeros(1)]) + eps), max=1.0)
    return torch.cumsum(weights[:, None, None, None] * flows, dim=0)


def token_displacement(flows: "torch.Tensor", sigma: float, divisor: float) -> "torch.Tensor":
    """Grid-level pixel flows [F, 2, h, w] (`grid_flows`) -> accumulated displacement [F, 2, h, w] in tokens
    (smoothed, divided by `divisor`, accumulated)."""
    return accumulate(smooth(flows, sigma) / divisor)


# ----------------------------------------------------------------------------------------- the artifact
def flow_inputs(amf_hash: str, method: str, sigma: float, grid) -> dict:
    """What a flow artifact's hash takes."""
    return {"amf": amf_hash, "flow": method, "flow_smoothing": float(sigma), "grid": list(grid), "format": FLOW_FORMAT}


def reference_flow(amf, method: str, sigma: float, geo, device, log=None, store=None) -> "torch.Tensor":
    """[F, 2, h, w] token displacement of the reference `amf` (an AmfArtifact) at geometry `geo`: read from
    `store` when computed before (a `flow` artifact), else computed from its frames and stored there (None:
    computed, not kept). `log(line)` says which."""
    from safetensors.torch import load_file, save_file

    from ..store import content_key

    inputs = flow_inputs(amf.hash, method, sigma, geo.grid)
    h = content_key("flow", inputs)
    if store is not None and store.exists(h):
        info = store.info(h)  # verified against its checksums
        if log is not None:
            log(f"cache hit: flow {h[:12]}")
        return load_file(str(info.path / PAYLOAD))["displacement"]
    pixels = grid_flows(dense_flows(amf.frames, method, device), geo.grid)
    displacement = token_displacement(pixels, sigma, geo.height / geo.latent_height)
    if store is not None:
        extra = {"source": f"{method} flow of amf {amf.hash[:12]}"}
        with store.writer(h, "flow", inputs, parents=[amf.hash], extra=extra) as folder:
            save_file({"flows": pixels.contiguous(), "displacement": displacement.contiguous()}, str(folder / PAYLOAD))
        if log is not None:
            log(f"flow {h[:12]} ({method}) stored")
    return displacement
