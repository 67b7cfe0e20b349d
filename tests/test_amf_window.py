"""The windowed AMF of fast mode (ditflow.amf with a Window) against the full AMF and a brute-force masked one."""
from __future__ import annotations

import pytest
import torch

from ditflow.amf import Window, attention_confidence, attention_motion_flow, patch_coordinates, window_mask


def random_qk(heads, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(heads, n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    k = torch.randn(heads, n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    return q, k


def brute_force_logits(q, k, grid, window, temperature):
    """The dense per-pair logits [F, F, P, P] with the window's set to -inf, and which pairs are in reach [F, F]."""
    f, h, w = grid
    p = h * w
    heads, n, d = q.shape
    logits = torch.einsum("hnd,hmd->nm", q, k) / (heads * d ** 0.5) * temperature  # [N, N]
    logits = logits.view(f, p, f, p).transpose(1, 2)
    coords = patch_coordinates(h, w, dtype=q.dtype)
    if window.radius is not None:
        far = ((coords[None] - coords[:, None]).abs() > window.radius).any(-1)  # [P, P]
        logits = logits.masked_fill(far, float("-inf"))
    i = torch.arange(f)
    reach = (i[:, None] - i[None, :]).abs() <= (f if window.frame_distance is None else window.frame_distance)
    return logits, reach, coords


def brute_force(q, k, grid, window, temperature):
    """The dense masked soft AMF: [F, F, P, 2] (zero out of reach)."""
    logits, reach, coords = brute_force_logits(q, k, grid, window, temperature)
    return (logits.softmax(-1) @ coords - coords) * reach[:, :, None, None]


GRID = (4, 3, 5)


def test_a_window_that_covers_the_frame_is_the_full_amf_exactly():
    q, k = random_qk(2, 60, 4, 0)
    window = Window(radius=4, frame_distance=3)
    assert window.covers(GRID)
    local = attention_motion_flow(q, k, GRID, mode="soft", chunk=7, window=window)
    full = attention_motion_flow(q, k, GRID, mode="soft", chunk=7)
    assert torch.equal(local, full)
    g_local = torch.autograd.grad(local.square().sum(), (q, k))
    g_full = torch.autograd.grad(full.square().sum(), (q, k))
    for a, b in zip(g_local, g_full):
        assert torch.equal(a, b)


@pytest.mark.parametrize("window", [Window(radius=1), Window(frame_distance=1), Window(radius=2, frame_distance=2)])
def test_window_matches_brute_force_values_and_grads(window):
    q, k = random_qk(3, 60, 4, 1)
    ours = attention_motion_flow(q, k, GRID, temperature=2.0, mode="soft", chunk=4, window=window)
    ref = brute_force(q, k, GRID, window, 2.0)
    torch.testing.assert_close(ours, ref)
    target = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=ref.dtype)
    for a, b in zip(torch.autograd.grad(((ours - target) ** 2).sum(), (q, k)),
                    torch.autograd.grad(((ref - target) ** 2).sum(), (q, k))):
        torch.testing.assert_close(a, b)


def test_window_gradcheck():
    q, k = random_qk(2, 2 * 3 * 3, 4, 5)
    grid = (2, 3, 3)
    assert torch.autograd.gradcheck(
        lambda q, k: attention_motion_flow(q, k, grid, mode="soft", chunk=4, window=Window(1, 0)), (q, k))


@pytest.mark.parametrize("window", [Window(radius=1), Window(frame_distance=1), Window(radius=2, frame_distance=0)])
def test_windowed_argmax_is_the_masked_argmax(window):
    q, k = random_qk(2, 60, 4, 6)
    q, k = q.detach(), k.detach()
    ours = attention_motion_flow(q, k, GRID, mode="argmax", chunk=4, window=window)
    logits, reach, coords = brute_force_logits(q, k, GRID, window, 1.0)
    expected = (coords[logits.argmax(-1)] - coords) * reach[:, :, None, None]
    assert ours.dtype == torch.float32 and torch.equal(ours, expected.float())


def test_window_mask_marks_pairs_in_reach_and_reachable_reference_moves():
    reference = torch.zeros(4, 4, 15, 2)
    reference[0, 1, 0] = torch.tensor([3.0, 0.0])  # a match 3 patches away: out of a radius-2 window
    reference[0, 1, 1] = torch.tensor([2.0, -1.0])
    mask = window_mask(GRID, Window(radius=2, frame_distance=1), reference)
    assert mask.shape == (4, 4, 15)
    assert not mask[0, 2].any() and mask[0, 1, 1] and not mask[0, 1, 0]
    assert mask[3, 2].all()


def test_windowed_confidence_equals_full_when_covering_and_is_zero_out_of_reach():
    q, k = random_qk(2, 60, 4, 2)
    q, k = q.detach(), k.detach()
    full = attention_confidence(q, k, GRID)
    assert torch.equal(attention_confidence(q, k, GRID, window=Window()), full)
    window = Window(radius=1, frame_distance=1)
    local = attention_confidence(q, k, GRID, window=window)
    reach = window_mask(GRID, window)
    assert (local[~reach] == 0).all() and (local[reach] > 0).all()
    logits, _, _ = brute_force_logits(q, k, GRID, window, 2.0)
    torch.testing.assert_close(local[reach], logits.softmax(-1).amax(-1)[reach].float())


def test_limits_that_cover_the_grid_are_dropped():
    assert Window(radius=4, frame_distance=3).for_grid(GRID) is None
    assert Window(radius=9, frame_distance=1).for_grid(GRID) == Window(None, 1)
    assert Window(radius=2).for_grid(GRID) == Window(2, None)
