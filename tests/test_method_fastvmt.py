"""FastVMT (`--method fastvmt`): its tiled local AMF and losses on cases checkable by hand, its settings checked
before any weights load, and the CLI run on the tiny folder of every family and on both toy models (AdamW on the
latent, a full gradient every `grad_reuse`-th step, an image-to-video model's picture frame never moved)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, assert_one_line_error, assert_only_later_frames_moved, cli, watch_latent_steps
from ditflow.amf import attention_motion_flow
from ditflow.methods.fastvmt_loss import (TiledAMF, amf_l2, fastvmt_loss, frame_pairs, pair_weight_vector,
                                          pair_weights, tile_layout, tiled_amf, window_indices, window_loss)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY = ["--steps", "2", "--guidance-range", "2,1", "--opt-steps", "2", "--lr", "0.05,0.05"]


# -- the pure math -----------------------------------------------------------------------------------------
def test_pair_weights_fall_linearly_from_a_frame_with_itself():
    assert torch.allclose(pair_weights(4, 0.8), torch.tensor([1, 14 / 15, 13 / 15, 0.8]))
    assert pair_weights(1, 0.8).tolist() == [1.0]


def test_frame_pairs_and_their_weights_stop_at_the_last_frame():
    assert frame_pairs(3, 4) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    assert torch.allclose(pair_weight_vector(3, 4, 0.8), torch.tensor([1, 14 / 15, 13 / 15, 1, 14 / 15, 1]))
    assert len(frame_pairs(21, 4)) == 78  # the peer's 81 frames at 4x temporal compression


def test_tiles_cover_the_frame_and_each_centre_query_sits_in_its_tile():
    tile_of, centres = tile_layout(5, 7, (3, 4))  # tiles of rows 0-2 / 3-4 and columns 0-3 / 4-6
    assert tile_of.view(5, 7).tolist() == [[0] * 4 + [1] * 3] * 3 + [[2] * 4 + [3] * 3] * 2
    assert centres.tolist() == [1 * 7 + 2, 1 * 7 + 5, 4 * 7 + 2, 4 * 7 + 5]
    assert tile_layout(30, 52, (3, 4))[1].numel() == 130  # the peer's 10x13 tiles at 480x832
    tile_of, centres = tile_layout(2, 3, (3, 4))  # a tile larger than the frame is the frame
    assert tile_of.tolist() == [0] * 6 and centres.tolist() == [1 * 3 + 1]


def test_windows_are_shifted_whole_inside_the_frame():
    idx, origin, local = window_indices(torch.tensor([[0.2, 3.6], [6.9, 0.0]]), 6, 8, 3)
    assert origin.tolist() == [[0, 3], [5, 0]]  # centre (0, 4) and (7, 0): the 3x3 window moved in
    assert idx[0].tolist() == [24, 25, 26, 32, 33, 34, 40, 41, 42] and local.shape == (9, 2)
    idx, origin, _ = window_indices(torch.tensor([[3.0, 3.0]]), 6, 8, 21)  # wider than the frame: the frame
    assert origin.tolist() == [[0, 0]] and sorted(idx[0].tolist()) == list(range(48))


def shifted_video(frames=2, h=6, w=8, d=64, shift=1):
    """q: random sharp queries; frame 1's keys are frame 0's queries moved `shift` patches right (frame 0's keys
    are its queries): [1, F·h·w, d] each."""
    q = torch.randn(frames, h, w, d, generator=torch.Generator().manual_seed(0)) * 3
    k = q.clone()
    k[1] = torch.roll(q[0], shift, dims=1)
    return q.reshape(1, -1, d), k.reshape(1, -1, d)


def test_keys_shifted_by_one_patch_give_a_displacement_of_one_patch():
    q, k = shifted_video()
    amf = tiled_amf(q, k, (2, 6, 8), tile=(3, 4), window=5, pair_distance=2, temperature=1.0)
    assert amf.flows.shape == (3, 48, 2)  # pairs (0, 0), (0, 1), (1, 1)
    assert amf.flows[0].abs().max() < 1e-4  # a frame with itself: every query finds its own key
    to_next = amf.flows[1].view(6, 8, 2)
    # wherever the match is in the frame (column 7's went off the edge) and in its tile's window: (1, 0)
    assert torch.allclose(to_next[:, :7], torch.tensor([1.0, 0.0]).expand(6, 7, 2), atol=1e-4)


def test_the_tiles_window_goes_where_its_centre_query_went():
    q, k = shifted_video(shift=3)
    to_next = tiled_amf(q, k, (2, 6, 8), tile=(3, 4), window=3, pair_distance=2, temperature=1.0).flows[1].view(6, 8, 2)
    # the first tiles' centres (column 2) find column 5: windows of columns 4..6, which a 3-wide window around
    # each query could never reach; they hold the matches of columns 1..3, not column 0's (3)
    assert torch.allclose(to_next[:, 1:4], torch.tensor([3.0, 0.0]).expand(6, 3, 2), atol=1e-4)
    assert (to_next[:, 0, 0] > 3.5).all()


def test_a_window_covering_the_frame_is_ditflows_full_soft_amf():
    q, k = (torch.randn(1, 3 * 2 * 3, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    amf = tiled_amf(q, k, (3, 2, 3), tile=(1, 2), window=21, pair_distance=3, temperature=2.0)
    full = attention_motion_flow(q, k, (3, 2, 3), 2.0, mode="soft")  # [F, F, P, 2]
    assert torch.allclose(amf.flows, torch.stack([full[i, j] for i, j in frame_pairs(3, 3)]), atol=1e-5)


def test_heads_are_averaged_before_the_logits():
    q, k = (torch.randn(2, 2 * 4 * 4, 8, generator=torch.Generator().manual_seed(s)) for s in (3, 4))
    both = tiled_amf(q, k, (2, 4, 4), tile=(2, 2), window=3, pair_distance=2, temperature=1.0)
    mean = tiled_amf(q.mean(0, keepdim=True), k.mean(0, keepdim=True), (2, 4, 4), tile=(2, 2), window=3,
                     pair_distance=2, temperature=1.0)
    assert torch.allclose(both.flows, mean.flows)


def test_window_loss_is_zero_for_static_keys_and_grows_with_change():
    q = torch.randn(1, 4 * 6 * 8, 16, generator=torch.Generator().manual_seed(5))
    static = q.view(4, 48, 16)[:1].expand(4, 48, 16).reshape(1, -1, 16)  # every frame the same
    amf = tiled_amf(static, static, (4, 6, 8), tile=(3, 4), window=3, pair_distance=4, temperature=1.0)
    assert [m.shape[0] for m in amf.key_means[:3]] == [3, 2, 1] and amf.key_means[3] is None
    assert window_loss(amf.key_means) == 0
    moving = tiled_amf(static, q, (4, 6, 8), tile=(3, 4), window=3, pair_distance=4, temperature=1.0)
    assert window_loss(moving.key_means) > 0
    m = torch.zeros(3, 1, 2)
    m[1] = torch.tensor([3.0, 4.0])  # one tile, two slots: a change of norm 5 and back
    assert window_loss([m, None]) == 5.0
    assert window_loss([None, m[:1]]) == 0.0  # no query frame with two later frames


def test_amf_loss_by_hand():
    ref, gen = torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)
    gen[0, 0] = torch.tensor([1.0, 2.0])  # pair 0: squared norm 5 over all its patches
    gen[1, 2, 0] = 3.0  # pair 1: 9
    weights = torch.tensor([1.0, 0.5])
    assert amf_l2(gen, ref, weights) == (5 + 0.5 * 9) / 2
    key_means = [torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]]])]
    total = fastvmt_loss(TiledAMF(gen, key_means), ref, weights, amf_weight=5.0, window_weight=2.0)
    assert total == 5 * 4.75 + 2 * 5


def test_the_loss_moves_generated_queries_towards_the_reference():
    q, k = shifted_video()
    ref = tiled_amf(q, k, (2, 6, 8), tile=(3, 4), window=5, pair_distance=2, temperature=1.0).flows
    still = q.clone().requires_grad_(True)  # a video whose frame 1 keys are its frame 0 queries in place
    k0 = k.clone().view(2, 48, 64)
    k0[1] = q.view(2, 48, 64)[0]
    gen = tiled_amf(still, k0.view(1, -1, 64), (2, 6, 8), tile=(3, 4), window=5, pair_distance=2, temperature=1.0)
    loss = amf_l2(gen.flows, ref, pair_weight_vector(2, 2, 0.8))
    loss.backward()
    assert loss > 1 and still.grad.abs().sum() > 0


def test_memory_stays_one_frame_pair_at_a_time():
    """No tensor of forward or backward is larger than one frame's queries against one frame's keys ([P, P]),
    never the [F·P, F·P] map of the full AMF."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Largest(TorchDispatchMode):
        most = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.most = max([self.most, *(t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor))])
            return out

    f, p = 6, 6 * 8
    q, k = (torch.randn(1, f * p, 4, generator=torch.Generator().manual_seed(s)) for s in (6, 7))
    q.requires_grad_(True)
    with Largest() as seen:
        amf = tiled_amf(q, k, (f, 6, 8), tile=(3, 4), window=3, pair_distance=4, temperature=1.0)
        fastvmt_loss(amf, torch.zeros_like(amf.flows), pair_weight_vector(f, 4, 0.8), 5.0, 1.0).backward()
    assert q.grad is not None and seen.most <= p * p < (f * p) ** 2 // 16


# -- settings, before any weights ----------------------------------------------------------------------------
def test_published_defaults_and_settings_resolve_before_loading(tiny_rope):
    from ditflow.backbones import resolve_model
    from ditflow.config import GuideConfig
    from ditflow.methods import get_method

    cfg = resolve_model(tiny_rope).guide_config(GuideConfig(prompt="a red circle", method="fastvmt"))
    assert (cfg.lr, cfg.opt_steps, cfg.grad_reuse, cfg.guidance_range, cfg.injection) == (
        (0.003, 0.002), 10, 3, (50, 40), False)
    assert cfg.method_settings == dict(window=21, tile=(3, 4), pair_distance=4, far_weight=0.8, amf_weight=5.0,
                                       window_weight=1.0, attn_temperature=1.0)
    assert get_method("fastvmt").replayable(cfg) is False


@pytest.mark.parametrize("args, text", [
    (["--method", "fastvmt", "--alpha", "3"], "--alpha"),  # FlowMotion's
    (["--window", "5"], "--window"),  # FastVMT's, on DiTFlow
    (["--method", "fastvmt", "--window", "0"], "--window"),
    (["--method", "fastvmt", "--far-weight", "1.5"], "--far-weight"),
    (["--method", "fastvmt", "--loss", "moft"], "--loss"),  # DiTFlow's
])
def test_bad_settings_exit_2_before_any_weights_load(amf_cache, no_model, args, text):
    cache, amf = amf_cache
    assert_one_line_error(*cli(["guide", "--amf", amf, "-p", "a red circle", "--cache", str(cache), "-q", *args]), text,
                          exit_code=2)


# -- runs on every family ------------------------------------------------------------------------------------
def _tiny(kind):
    from ditflow import tiny

    return {"cogvideox": lambda p: tiny.build_tiny_pipeline(p, rope=True),
            "cogvideox1.5": tiny.build_tiny_cogvideox15_pipeline,
            "cogvideox-i2v": tiny.build_tiny_cogvideox_i2v_pipeline,
            "wan2.1": tiny.build_tiny_wan_pipeline,
            "wan2.2-a14b": lambda p: tiny.build_tiny_wan_pipeline(p, variant="2.2-a14b"),
            "wan2.1-i2v": lambda p: tiny.build_tiny_wan_pipeline(p, variant="2.1-i2v")}[kind]


MODELS = {  # name: (frame axis of its latent, image-to-video)
    "cogvideox": (1, False), "cogvideox1.5": (1, False), "cogvideox-i2v": (1, True), "wan2.1": (2, False),
    "wan2.2-a14b": (2, False), "wan2.1-i2v": (2, True), "toy": (1, False), "toy-i2v": (1, True)}


@pytest.fixture(scope="module", params=list(MODELS))
def run(request, ref_video, picture, tmp_path_factory):
    """One `ditflow guide --method fastvmt` per model through the CLI (2 steps, 1 guided, 2 AdamW steps): its gen
    artifact and the (before, after) latents of its guided steps."""
    from ditflow import artifacts
    from ditflow.store import Store

    name = request.param
    cache = tmp_path_factory.mktemp(f"fastvmt-{name}")
    if name.startswith("toy"):
        size = ["--model", name, "--frames", "9", "--height", "64", "--width", "64", "--blocks", "6"]
        video, image = str(ASSETS / "toy-reference.gif"), str(ASSETS / "toy-image.png")
    else:
        folder = str(_tiny(name)(tmp_path_factory.mktemp(name)))
        size = ["--model", folder, "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH),
                "--blocks", "1"]
        video, image = ref_video, picture
    code, out, err = cli(["extract", video, *size, "--cache", str(cache), "-q"])
    assert code == 0, err
    extra = ["--image", image] if MODELS[name][1] else []
    from ditflow.model import Model

    conds, forward = [], Model.forward

    def spy(self, *args, **kw):  # the reference's pass is the one forward that names its condition
        if "cond" in kw:
            conds.append(kw["cond"])
        return forward(self, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        steps = watch_latent_steps(mp)
        mp.setattr(Model, "forward", spy)
        code, out, err = cli(["guide", "--amf", out.strip(), "-p", "a red circle", "--method", "fastvmt", *TINY,
                              *extra, "--cache", str(cache), "-q"])
    assert code == 0, err
    return name, artifacts.load(Store(cache), out.strip(), "gen"), steps, conds


def test_a_guided_step_is_adamw_with_a_full_gradient_every_third_step(run):
    name, gen, steps, conds = run
    assert [(r["step"], r["opt_step"], r["fresh"], r["lr"]) for r in gen.losses] == [(0, 0, True, 0.05),
                                                                                    (0, 1, False, 0.05)]
    assert np.isfinite([r["loss"] for r in gen.losses]).all() and gen.losses[0]["loss"] > 0
    assert gen.inputs["method"] == "fastvmt" and gen.inputs["method_settings"]["tile"] == [3, 4]
    assert len(steps) == 1 and not torch.equal(*steps[0])
    # one reference pass a guided step, an image-to-video one on the reference's own first frame
    assert len(conds) == 1 and (conds[0] is not None) == MODELS[name][1]
    if MODELS[name][1]:
        assert_only_later_frames_moved(steps, MODELS[name][0])


@pytest.mark.parametrize("run", ["cogvideox"], indirect=True)  # one model is enough
def test_inject_refuses_a_fastvmt_gen_in_one_line(run):
    name, gen, *_ = run
    assert_one_line_error(*cli(["inject", "--emb", gen.hash, "-p", "a blue square", "--cache", str(gen.path.parents[2]),
                                "-q"]), "--method fastvmt leaves nothing to replay")
