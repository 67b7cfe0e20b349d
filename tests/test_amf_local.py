"""The local AMF of fast mode (ditflow.amf_local) against the full streaming AMF and a brute-force masked one."""
from __future__ import annotations

import pytest
import torch

from ditflow.amf import attention_confidence, attention_motion_flow, patch_coordinates
from ditflow.amf_local import Window, local_attention_confidence, local_attention_motion_flow, local_mask


def random_qk(heads, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(heads, n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    k = torch.randn(heads, n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    return q, k


def brute_force(q, k, grid, window, temperature):
    """The dense per-pair softmax with the window's logits set to -inf: [F, F, P, 2] (zero out of reach)."""
    f, h, w = grid
    p = h * w
    heads, n, d = q.shape
    logits = torch.einsum("hnd,hmd->nm", q, k) / (heads * d ** 0.5) * temperature  # [N, N]
    coords = patch_coordinates(h, w, dtype=q.dtype)
    out = torch.zeros(f, f, p, 2, dtype=q.dtype)
    for i in range(f):
        for j in range(f):
            if window.frame_distance is not None and abs(i - j) > window.frame_distance:
                continue
            block = logits[i * p:(i + 1) * p, j * p:(j + 1) * p]
            if window.radius is not None:
                far = ((coords[None] - coords[:, None]).abs() > window.radius).any(-1)
                block = block.masked_fill(far, float("-inf"))
            out[i, j] = block.softmax(-1) @ coords - coords
    return out


GRID = (4, 3, 5)


def test_local_equals_full_when_the_window_covers_the_frame():
    q, k = random_qk(2, 60, 4, 0)
    window = Window(radius=4, frame_distance=3)
    assert window.covers(GRID)
    local = local_attention_motion_flow(q, k, GRID, window, chunk=7)
    full = attention_motion_flow(q, k, GRID, mode="soft", chunk=7)
    torch.testing.assert_close(local, full)
    g_local = torch.autograd.grad(local.square().sum(), (q, k))
    g_full = torch.autograd.grad(full.square().sum(), (q, k))
    for a, b in zip(g_local, g_full):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("window", [Window(radius=1), Window(frame_distance=1), Window(radius=2, frame_distance=2)])
def test_local_matches_brute_force_values_and_grads(window):
    q, k = random_qk(3, 60, 4, 1)
    ours = local_attention_motion_flow(q, k, GRID, window, temperature=2.0, chunk=4)
    ref = brute_force(q, k, GRID, window, 2.0)
    torch.testing.assert_close(ours, ref)
    target = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=ref.dtype)
    for a, b in zip(torch.autograd.grad(((ours - target) ** 2).sum(), (q, k)),
                    torch.autograd.grad(((ref - target) ** 2).sum(), (q, k))):
        torch.testing.assert_close(a, b)


def test_local_mask_marks_pairs_in_reach_and_reachable_reference_moves():
    reference = torch.zeros(4, 4, 15, 2)
    reference[0, 1, 0] = torch.tensor([3.0, 0.0])  # a match 3 patches away: out of a radius-2 window
    reference[0, 1, 1] = torch.tensor([2.0, -1.0])
    mask = local_mask(GRID, Window(radius=2, frame_distance=1), reference)
    assert mask.shape == (4, 4, 15)
    assert not mask[0, 2].any() and mask[0, 1, 1] and not mask[0, 1, 0]
    assert mask[3, 2].all()


def test_local_confidence_equals_full_when_covering_and_is_zero_out_of_reach():
    q, k = random_qk(2, 60, 4, 2)
    q, k = q.detach(), k.detach()
    full = attention_confidence(q, k, GRID)
    torch.testing.assert_close(local_attention_confidence(q, k, GRID, Window()).double(), full.double())
    local = local_attention_confidence(q, k, GRID, Window(radius=1, frame_distance=1))
    reach = local_mask(GRID, Window(radius=1, frame_distance=1))
    assert (local[~reach] == 0).all() and (local[reach] > 0).all()


def test_limits_that_cover_the_grid_are_dropped():
    assert Window(radius=4, frame_distance=3).for_grid(GRID) is None
    assert Window(radius=9, frame_distance=1).for_grid(GRID) == Window(None, 1)
    assert Window(radius=2).for_grid(GRID) == Window(2, None)
