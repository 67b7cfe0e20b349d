"""ditflow.amf against the slow, paper-style reference in ditflow.amf.reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    import ditflow  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditflow.amf import attention_motion_flow
from ditflow.amf.reference import plain_attention_motion_flow


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """max |actual - expected| <= tol * max |expected| (relative to the tensor's scale, not per element)."""
    assert actual.shape == expected.shape
    err = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol:g} x max |expected| {scale:.3g}"


def random_qk(heads: int, n: int, d: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads, n, d, generator=g, dtype=dtype), torch.randn(heads, n, d, generator=g, dtype=dtype)


# (heads, head_dim, grid, temperature, chunk): uneven chunks cross frame and chunk boundaries
CASES = [
    (3, 8, (3, 4, 5), 2.0, 7),
    (2, 16, (2, 3, 6), 0.5, 2048),
    (4, 4, (1, 5, 5), 5.0, 1),
    (2, 8, (4, 2, 3), 2.0, 5),
]


@pytest.mark.parametrize("heads,d,grid,temperature,chunk", CASES)
def test_soft_matches_reference_values_and_grads(heads, d, grid, temperature, chunk):
    f, h, w = grid
    q, k = random_qk(heads, f * h * w, d, seed=heads * 100 + d)
    q.requires_grad_(True)
    k.requires_grad_(True)

    ours = attention_motion_flow(q, k, grid, temperature=temperature, mode="soft", chunk=chunk)
    ref = plain_attention_motion_flow(q, k, grid, temperature=temperature, mode="soft")
    assert ours.shape == (f, f, h * w, 2)
    assert ours.dtype == torch.float32
    assert_rel_close(ours, ref)

    # a generic upstream gradient, plus the benchmark's loss shape (MSE to a fixed target)
    weight = torch.randn(ours.shape, generator=torch.Generator().manual_seed(7))
    for loss_fn in (lambda a: (a * weight).sum(), lambda a: ((a - weight) ** 2).mean()):
        g_ours = torch.autograd.grad(loss_fn(ours), (q, k), retain_graph=True)
        g_ref = torch.autograd.grad(loss_fn(ref), (q, k), retain_graph=True)
        for a, b in zip(g_ours, g_ref):
            assert_rel_close(a, b)


@pytest.mark.parametrize("heads,d,grid,temperature,chunk", CASES)
def test_soft_float64_agrees_with_reference_to_1e_14(heads, d, grid, temperature, chunk):
    """In float64 the streaming form and the paper's code differ only by rounding, values and gradients."""
    f, h, w = grid
    q, k = (t.requires_grad_(True) for t in random_qk(heads, f * h * w, d, seed=heads + d, dtype=torch.float64))
    ours = attention_motion_flow(q, k, grid, temperature=temperature, mode="soft", chunk=chunk)
    ref = plain_attention_motion_flow(q, k, grid, temperature=temperature, mode="soft")
    assert ours.dtype == torch.float64
    assert_rel_close(ours, ref, tol=1e-14)
    weight = torch.randn(ours.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((ours * weight).sum(), (q, k)), torch.autograd.grad((ref * weight).sum(), (q, k))):
        assert_rel_close(a, b, tol=1e-14)


@pytest.mark.parametrize("heads,d,grid,temperature,chunk", CASES)
def test_argmax_identical_to_reference(heads, d, grid, temperature, chunk):
    f, h, w = grid
    q, k = random_qk(heads, f * h * w, d, seed=heads * 10 + d + 1)
    ours = attention_motion_flow(q, k, grid, temperature=temperature, mode="argmax", chunk=chunk)
    ref = plain_attention_motion_flow(q, k, grid, temperature=temperature, mode="argmax")
    assert ours.shape == ref.shape == (f, f, h * w, 2)
    assert torch.equal(ours, ref)
    # a frame against itself always matches itself: q = k gives zero displacement on the diagonal
    ours_self = attention_motion_flow(q, q, grid, mode="argmax", chunk=chunk)
    for i in range(f):
        assert torch.equal(ours_self[i, i], torch.zeros(h * w, 2))


def test_soft_grads_only_for_inputs_that_require_them():
    q, k = random_qk(2, 2 * 3 * 4, 8, seed=3)
    q.requires_grad_(True)
    out = attention_motion_flow(q, k, (2, 3, 4), mode="soft", chunk=5)
    (g,) = torch.autograd.grad(out.square().sum(), (q,))
    ref = plain_attention_motion_flow(q, k, (2, 3, 4), mode="soft")
    (g_ref,) = torch.autograd.grad(ref.square().sum(), (q,))
    assert_rel_close(g, g_ref)
    assert k.grad is None


def test_soft_float64_gradcheck():
    q, k = random_qk(2, 2 * 2 * 3, 4, seed=11, dtype=torch.float64)
    q.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q, k: attention_motion_flow(q, k, (2, 2, 3), temperature=2.0, mode="soft", chunk=5), (q, k)
    )


def test_soft_half_precision_input_keeps_dtype():
    q, k = random_qk(2, 2 * 3 * 4, 8, seed=5)
    ref = plain_attention_motion_flow(q, k, (2, 3, 4), mode="soft")
    qb, kb = q.bfloat16().requires_grad_(True), k.bfloat16().requires_grad_(True)
    out = attention_motion_flow(qb, kb, (2, 3, 4), mode="soft")
    assert out.dtype == torch.bfloat16
    assert_rel_close(out.float(), ref, tol=2e-2)
    out.float().sum().backward()
    assert qb.grad.dtype == torch.bfloat16 and kb.grad.dtype == torch.bfloat16


def shifted_video(grid, shift, heads=2, head_dim=32, self_logit=40.0, seed=0):
    """q = k = features of a video whose frame t is frame 0 moved by t·shift patches.

    Every position (x, y) of an unbounded canvas gets a random feature f(x, y); frame t's patch (x, y)
    holds f(x - t·dx, y - t·dy). The same content therefore sits shift·(j - i) patches further in frame j
    than in frame i. Features are random unit vectors, scaled so that a patch's logit with itself
    (head mean of q·k/√d) is `self_logit`, while two different random unit vectors in heads·head_dim
    dimensions have a cosine of ±0.1 or so: the logits are sharp, the match is unambiguous.
    """
    f, h, w = grid
    dx, dy = shift
    margin_x, margin_y = abs(dx) * (f - 1), abs(dy) * (f - 1)
    g = torch.Generator().manual_seed(seed)
    canvas = torch.randn(h + 2 * margin_y, w + 2 * margin_x, heads * head_dim, generator=g)
    canvas = canvas / canvas.norm(dim=-1, keepdim=True)
    frames = []
    for t in range(f):
        y0, x0 = margin_y - t * dy, margin_x - t * dx  # canvas index of frame t's patch (0, 0)
        frames.append(canvas[y0 : y0 + h, x0 : x0 + w].reshape(h * w, heads * head_dim))
    feats = torch.cat(frames) * (self_logit * heads * head_dim**0.5) ** 0.5
    qk = feats.view(-1, heads, head_dim).transpose(0, 1).contiguous()  # [heads, N, head_dim]
    return qk


@pytest.mark.parametrize("shift", [(2, 1), (-1, 2), (0, -1)])
def test_argmax_recovers_known_shift(shift):
    grid = (3, 8, 10)
    f, h, w = grid
    dx, dy = shift
    qk = shifted_video(grid, shift)
    amf = attention_motion_flow(qk, qk, grid, mode="argmax", chunk=37)
    amf_soft = attention_motion_flow(qk, qk, grid, temperature=1.0, mode="soft", chunk=37)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    xs, ys = xs.flatten(), ys.flatten()
    checked = 0
    for i in range(f):
        for j in range(f):
            ex, ey = (j - i) * dx, (j - i) * dy
            # the content of patch (x, y) of frame i is at (x + ex, y + ey) in frame j, when that is inside
            inside = (xs + ex >= 0) & (xs + ex < w) & (ys + ey >= 0) & (ys + ey < h)
            expected = torch.tensor([ex, ey], dtype=amf.dtype).expand(int(inside.sum()), 2)
            assert torch.equal(amf[i, j][inside], expected), (i, j)
            torch.testing.assert_close(amf_soft[i, j][inside], expected, atol=1e-3, rtol=0)
            checked += int(inside.sum())
    assert checked > f * h * w  # more than the trivial diagonal
    assert torch.equal(amf, plain_attention_motion_flow(qk, qk, grid, mode="argmax"))


@pytest.mark.parametrize("fn", [attention_motion_flow, plain_attention_motion_flow])
def test_bad_inputs_raise_value_error(fn):
    q, k = random_qk(2, 24, 4, seed=1)
    with pytest.raises(ValueError):
        fn(q[0], k[0], (2, 3, 4))  # missing the heads dimension
    with pytest.raises(ValueError):
        fn(q, k[:, :20], (2, 3, 4))  # q and k disagree
    with pytest.raises(ValueError):
        fn(q, k[..., :3], (2, 3, 4))
    with pytest.raises(ValueError):
        fn(q, k, (2, 3, 5))  # grid does not cover N
    with pytest.raises(ValueError):
        fn(q, k, (3, 3, 4))
    with pytest.raises(ValueError):
        fn(q, k, (2, 3, 4), mode="sharp")
    with pytest.raises(ValueError):
        fn(q.flatten(), k.flatten(), (2, 3, 4))


@pytest.mark.parametrize("mode", ["soft", "argmax"])
def test_bad_chunk_raises_value_error(mode):
    q, k = random_qk(2, 24, 4, seed=1)
    with pytest.raises(ValueError):
        attention_motion_flow(q, k, (2, 3, 4), mode=mode, chunk=0)


def test_confidence_is_the_largest_soft_probability():
    """attention_confidence[i, j, p] is the max over frame j of the softmax soft mode uses, computed densely here."""
    from ditflow.amf import attention_confidence

    grid = (3, 4, 5)
    q, k = random_qk(2, 60, 8, seed=4)
    conf = attention_confidence(q, k, grid, temperature=2.0, chunk=7)
    logits = torch.einsum("hnd,hmd->nm", q, k) / (2 * 8**0.5) * 2.0  # head mean of q·k/√d, times temperature
    prob = logits.view(60, 3, 20).softmax(-1).amax(-1)  # [N, F_key]
    torch.testing.assert_close(conf, prob.view(3, 20, 3).transpose(1, 2))
    flat = attention_confidence(torch.zeros_like(q), torch.zeros_like(k), grid)
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 20))  # flat attention: 1/P everywhere


def test_weighted_amf_loss_ignores_zero_weight_entries():
    from ditflow.losses import amf_loss

    ref = torch.zeros(2, 2, 3, 2)
    ref[0, 1, 0] = torch.tensor([1.0, 0.0])
    ref[0, 1, 1] = torch.tensor([0.0, 2.0])
    gen = ref.clone()
    gen[0, 1, 1] = 0.0  # wrong only where the weight is 0
    w = torch.ones(2, 2, 3)
    w[0, 1, 1] = 0.0
    assert amf_loss(gen, ref, weight=w).item() == 0.0
    assert amf_loss(gen, ref).item() > 0.0
    w[0, 1, 1] = 1.0
    torch.testing.assert_close(amf_loss(gen, ref, weight=w), amf_loss(gen, ref))  # uniform weight: the plain loss


def test_amf_loss_on_a_soft_target_scores_the_entries_the_argmax_marks_moving():
    from ditflow.losses import amf_loss

    soft = torch.full((2, 2, 3, 2), 0.3)  # a soft AMF is never exactly zero
    moving = torch.zeros(2, 2, 3, dtype=torch.bool)
    moving[0, 1, 0] = True
    gen = soft.clone()
    gen[1, 0, 2] = 5.0  # wrong only on an entry the argmax saw still
    assert amf_loss(gen, soft, moving=moving).item() == 0.0
    assert amf_loss(gen, soft).item() > 0.0  # without the argmax's entries every soft entry counts
    gen[0, 1, 0, 0] = 1.3  # off by 1 in x on the one moving entry: mean over its (dx, dy) = (1 + 0) / 2
    torch.testing.assert_close(amf_loss(gen, soft, moving=moving), torch.tensor(0.5))
    torch.testing.assert_close(amf_loss(gen, soft, moving=moving, weight=torch.ones(2, 2, 3)), torch.tensor(0.5))
