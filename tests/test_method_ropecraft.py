"""RoPECraft (`--method ropecraft`): the flow's preprocessing, the warped RoPE tables and the phase loss checked by
hand; the deltas' AdamW; guided runs on tiny random pipelines of the real classes (CogVideoX 1.0 through the CLI
chain with the cached flow, Wan 2.1 replayed by inject, Wan 2.1 I2V with the picture's frame kept out), and the
refusals before any weights load (a sincos model, RAFT without its weights)."""
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FRAMES, HEIGHT, WIDTH, cli, extract_cfg, one_error_line
from ditflow.config import GuideConfig, RuntimeOptions
from ditflow.methods.ropecraft_flow import accumulate, dis_flows, gaussian_kernel, grid_flows, smooth, token_displacement
from ditflow.methods.ropecraft_guide import RoPECraftGuide, phase_loss, warped_tables
from ditflow.stages import InjectConfig, extract, guide, inject
from ditflow.store import Store

RUNTIME = RuntimeOptions(device="cpu", quiet=True)
# two guided steps of two AdamW steps; a light smoothing: the tiny grids are 2x3 tokens (theirs 11 is for 30x52)
RUN = dict(method="ropecraft", prompt="a red circle", steps=4, guidance_range=(4, 2), opt_steps=2, lr=(0.01, 0.01),
           method_settings={"flow_smoothing": 1.0})


# --------------------------------------------------------------------------------------------- the flow
def test_dis_finds_a_known_translation():
    rng = np.random.default_rng(0)
    texture = (rng.random((40, 80, 3)) * 255).astype(np.uint8)
    import cv2

    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    frames = np.stack([texture[4:36, 20 - 3 * t : 68 - 3 * t] for t in range(4)])  # content moves 3 px right a frame
    flows = dis_flows(frames)
    assert flows.shape == (3, 2, 32, 48)
    inner = flows[:, :, 8:24, 8:40]
    assert inner[:, 0].median().item() == pytest.approx(3.0, abs=0.05) and inner[:, 1].abs().median() < 0.05


def test_raft_reads_its_weights_from_the_torch_cache_and_takes_small_frames(tmp_path, monkeypatch):
    """RAFT-small (randomly initialised weights here: the real ones are never downloaded) on 32x48 frames, which
    it sees upscaled to 128x192 (its correlation pyramid's least), its flow scaled back."""
    from torchvision.models.optical_flow import raft_small

    from ditflow.methods.ropecraft_flow import check_raft_weights, dense_flows

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = tmp_path / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    weights.parent.mkdir(parents=True)
    torch.save(raft_small(weights=None).state_dict(), weights)
    assert check_raft_weights() == weights
    frames = (np.random.default_rng(0).random((2, 32, 48, 3)) * 255).astype(np.uint8)
    flows = dense_flows(frames, "raft", "cpu")
    assert flows.shape == (1, 2, 32, 48) and torch.isfinite(flows).all()


def test_one_single_frame_flow_per_token_frame_at_linspace():
    flows = torch.arange(8.0).reshape(8, 1, 1, 1).expand(8, 2, 4, 6)  # flow i is i everywhere
    picked = grid_flows(flows, (3, 2, 3))
    assert picked.shape == (3, 2, 2, 3)
    assert picked[:, 0, 0, 0].tolist() == [0.0, 3.0, 7.0]  # linspace(0, 7, 3) = 0, 3.5, 7, truncated
    assert grid_flows(flows[:0], (3, 2, 3)).abs().sum() == 0  # one frame: no motion


def test_a_uniform_translation_moves_each_token_by_its_pixels_over_the_vae_factor_accumulated():
    flows = torch.zeros(8, 2, 32, 48)
    flows[:, 0] = 16.0  # 16 px right between every pair of frames
    displacement = token_displacement(grid_flows(flows, (3, 2, 3)), 0.0, 8.0)
    # their divisor 8 (the VAE factor): 2 tokens a frame, summed from frame 0 inclusive; no vertical motion
    assert torch.equal(displacement[:, 0], torch.tensor([2.0, 4.0, 6.0]).reshape(3, 1, 1).expand(3, 2, 3))
    assert displacement[:, 1].abs().sum() == 0


def test_the_lookup_norm_weighs_down_a_frame_whose_flow_then_changes():
    flows = torch.zeros(3, 2, 1, 1)
    flows[:, 0, 0, 0] = torch.tensor([1.0, 3.0, 3.0])
    # frame 0's next differs by 2: weight 1/2; frames 1 (no change) and 2 (the last): weight 1
    assert accumulate(flows)[:, 0, 0, 0].tolist() == pytest.approx([0.5, 3.5, 6.5], abs=1e-5)


def test_the_smoothing_is_their_21_tap_gaussian_with_zero_padding():
    taps = gaussian_kernel(11.0)[10] / gaussian_kernel(11.0)[10].sum()  # the 1-D kernel
    assert taps[0].item() == pytest.approx(math.exp(-100 / 242) * taps[10].item())
    ones = torch.ones(1, 2, 41, 41)
    out = smooth(ones, 11.0)
    assert out[0, 0, 20, 20].item() == pytest.approx(1.0)  # the whole kernel inside: unchanged
    assert out[0, 1, 0, 0].item() == pytest.approx(taps[10:].sum().item() ** 2, rel=1e-5)  # a corner sees a quarter
    assert torch.equal(smooth(ones, 0.0), ones)


# ----------------------------------------------------------------------------------- the warped tables
GRID = (2, 3, 4)


def _tables(dims, dy, dx, theta=10000.0):
    """(cos, sin) [N, D] of RoPE over GRID at (frame, row + dy, column + dx), axes concatenated in `dims`, each
    frequency repeated for its pair (CogVideoX's and Wan's layout); RoPECraft's fractional positions."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    f, h, w = GRID
    parts = []
    for dim, pos, view in ((dims[0], torch.arange(f), (f, 1, 1)), (dims[1], torch.arange(h) + dy, (1, h, 1)),
                           (dims[2], torch.arange(w) + dx, (1, 1, w))):
        cs = get_1d_rotary_pos_embed(dim, pos.double(), theta, use_real=True, freqs_dtype=torch.float64)
        parts.append([t.view(*view, -1).expand(f, h, w, -1) for t in cs])
    return [torch.cat([p[i] for p in parts], -1).reshape(f * h * w, -1).float() for i in (0, 1)]


def cogvideox_tables(dy: float = 0.0, dx: float = 0.0) -> torch.Tensor:
    """CogVideoX's [q/k, cos/sin, N, D] tables (head dim 16: t 4, h 6, w 6)."""
    return torch.stack([torch.stack(_tables((4, 6, 6), dy, dx))] * 2)


def wan_tables(dy: float = 0.0, dx: float = 0.0) -> torch.Tensor:
    """Wan's [cos/sin, 1, S, 1, D] tables (head dim 12: t 4, h 4, w 4)."""
    return torch.stack([t[None, :, None] for t in _tables((4, 4, 4), dy, dx)])


TABLES = {"cogvideox": (cogvideox_tables, 2), "wan": (wan_tables, 2)}  # builder, the tokens' axis


def test_the_tables_here_are_the_models_own():
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    f, h, w = GRID
    own = WanRotaryPosEmbed(12, (1, 2, 2), 32)(torch.zeros(1, 4, f, 2 * h, 2 * w))
    assert torch.allclose(wan_tables(), torch.stack(own), atol=1e-6)
    cos, sin = get_3d_rotary_pos_embed(16, ((0, 0), (h, w)), (h, w), f)  # CogVideoX 1.0 at its sample size
    assert torch.allclose(cogvideox_tables()[0], torch.stack([cos, sin]), atol=1e-6)


@pytest.mark.parametrize("family", TABLES)
def test_zero_flow_gives_the_models_own_tables_exactly(family):
    tables = TABLES[family][0]()
    assert torch.equal(warped_tables(tables, GRID, torch.zeros(GRID[0], 2, *GRID[1:])), tables)


@pytest.mark.parametrize("family", TABLES)
def test_a_shift_of_one_token_is_the_neighbours_table(family):
    build, axis = TABLES[family]
    tables = build()
    grid = tables.unflatten(axis, GRID)
    right, down = torch.zeros(GRID[0], 2, *GRID[1:]), torch.zeros(GRID[0], 2, *GRID[1:])
    right[:, 0], down[:, 1] = 1.0, 1.0
    moved = warped_tables(tables, GRID, right).unflatten(axis, GRID)
    assert torch.allclose(moved.narrow(axis + 2, 0, 3), grid.narrow(axis + 2, 1, 3), atol=1e-6)
    moved = warped_tables(tables, GRID, down).unflatten(axis, GRID)
    assert torch.allclose(moved.narrow(axis + 1, 0, 2), grid.narrow(axis + 1, 1, 2), atol=1e-6)


@pytest.mark.parametrize("family", TABLES)
def test_a_fractional_shift_is_rope_at_the_fractional_position(family):
    """What RoPECraft computes: the tables rebuilt at positions row + y, column + x (the frame axis unchanged)."""
    build, _ = TABLES[family]
    shift = torch.zeros(GRID[0], 2, *GRID[1:])
    shift[:, 0], shift[:, 1] = 0.3, -1.7
    assert torch.allclose(warped_tables(build(), GRID, shift), build(dy=-1.7, dx=0.3), atol=1e-5)


# --------------------------------------------------------------------------------------------- the loss
def test_the_phase_loss_by_hand():
    z = torch.randn(1, 3, 4, 5, 6)
    assert phase_loss(z, z.clone()) == 0 and phase_loss(z, 3 * z) < 1e-6  # a positive scale keeps every phase
    # an impulse against itself moved d along 8 columns: coefficient k turns by -2πkd/8 (rfft: k = 0..4)
    impulse = torch.zeros(1, 1, 1, 1, 8)
    impulse[..., 0] = 1
    for d in (1, 2):
        angles = [2 * math.pi * k * d / 8 for k in range(5)]
        expected = np.mean([abs(1 - math.cos(a)) for a in angles]) + np.mean([abs(math.sin(a)) for a in angles])
        assert phase_loss(impulse, impulse.roll(d, -1)).item() == pytest.approx(expected, abs=1e-5)
    # a random field moved s columns (s <= 1: the highest coefficient turns by at most π): the loss grows with s.
    # Beyond one column the turns wrap: every coefficient counts alike, so a white field's loss saturates.
    field = torch.randn(1, 2, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    k = torch.arange(17)

    def moved(s):
        return torch.fft.irfft(torch.fft.rfft(field, dim=-1) * torch.exp(-2j * math.pi * k * s / 32), n=32, dim=-1)

    losses = [phase_loss(field, moved(s)).item() for s in (0.0, 0.25, 0.5, 1.0)]
    assert losses[0] < 1e-5 and losses == sorted(losses) and losses[1] > 0.1


class _FakeBackbone:
    frame_axis, needs_image = 1, False

    def x0_coefficients(self, t):
        return 1.0, 1.0

    def emb_value(self, var, angles):
        return var


class _FakeModel:
    """A 'transformer' whose prediction is x scaled by the tables' sum: enough to move the deltas."""

    backbone = _FakeBackbone()

    def positions(self, emb):
        return emb

    def install(self, taps):
        return nullcontext()

    def predict(self, x, t, text, scale, positions):
        assert scale is None  # the loss's prediction has no CFG, as theirs
        return x * positions.sum()


def test_one_delta_a_guided_step_all_summed_under_one_adamw():
    tables = torch.ones(2, 5)
    x = torch.randn(1, 3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    g = RoPECraftGuide(_FakeModel(), tables, torch.zeros_like(x), text=None, steps_active=range(0, 3),
                       lr=(0.1, 0.1), guidance_range=(3, 0), opt_steps=1, mse_weight=0.1)
    out, positions = g(x, 0, torch.tensor(900))
    assert out is x and torch.equal(positions, tables)  # sampled with the tables of the last loss: before its update
    assert g.deltas[0].abs().min() > 0 and g.deltas[1].abs().sum() == 0 and g.deltas[2].abs().sum() == 0
    first = g.deltas[0].detach().clone()
    g(x, 1, torch.tensor(800))
    # step 1 samples tables + δ0 + δ1 (δ1 still 0), then both deltas move (the same gradient, one optimiser)
    assert torch.equal(g.embeddings[800], tables + first)
    assert not torch.equal(g.deltas[0], first) and g.deltas[1].abs().min() > 0 and g.deltas[2].abs().sum() == 0
    assert [r["step"] for r in g.losses] == [0, 1] and list(g.embeddings) == [900, 800]


# --------------------------------------------------------------------------------------------- the runs
@pytest.fixture(scope="module")
def cog(tiny_rope, ref_video, tmp_path_factory):
    """The tiny CogVideoX RoPE model through the CLI: its cache and AMF."""
    cache = tmp_path_factory.mktemp("rc-cog")
    code, out, err = cli(["extract", ref_video, "--model", tiny_rope, "--frames", str(FRAMES), "--height", str(HEIGHT),
                          "--width", str(WIDTH), "--blocks", "1", "-q", "--cache", str(cache)])
    assert code == 0, err
    return cache, out.strip()


def test_the_cli_chain_with_the_flow_computed_once(cog, tmp_path, monkeypatch):
    cache, amf = cog
    flag = ["--cache", str(cache), "-q"]
    args = ["guide", "--amf", amf, "--method", "ropecraft", "--flow-smoothing", "1", "--steps", "4", "--guidance-range",
            "4,2", "--opt-steps", "2", "--lr", "0.01,0.01", *flag]
    code, gen, err = cli([*args, "-p", "a red circle", "--out", str(tmp_path / "g.mp4")])
    assert code == 0, err
    gen = gen.strip()
    store = Store(cache)
    flows = [h for h in store.hashes() if store.info(h).kind == "flow"]
    assert len(flows) == 1 and store.info(flows[0]).parents == [amf]
    code, listing, _ = cli(["cache", "ls", "--cache", str(cache)])
    assert code == 0 and flows[0][:12] in listing and "flow" in listing

    def never(*_):
        raise AssertionError("the flow was computed again")

    monkeypatch.setattr("ditflow.methods.ropecraft_flow.dense_flows", never)
    code, other, err = cli([*args, "-p", "a blue square"])  # another run: the flow is a cache hit
    assert code == 0 and other.strip() != gen, err
    code, new, err = cli(["inject", "--emb", gen, "-p", "a red circle", *flag])
    assert code == 0, err
    replayed = store.info(new.strip())
    assert replayed.meta["inputs"]["emb"] == gen
    from ditflow.artifacts import load

    original, again = load(store, gen, "gen"), load(store, new.strip(), "gen")
    assert sorted(original.embeddings()) == original.meta["embedding_timesteps"] and len(original.embeddings()) == 2
    assert np.abs(again.frames.astype(int) - original.frames.astype(int)).max() <= 2  # the same tables replayed
    code, out, err = cli(["eval", new.strip(), "--metrics", "mf", "--tracker", "lk", *flag])
    assert code in (0, 2), err  # the tiny random model's noise may leave nothing to track


def test_wan_guides_the_tables_and_inject_replays_them(ref_video, tmp_path_factory):
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    from ditflow.backbones.loaded import keep_loaded
    from ditflow.tiny import build_tiny_wan_pipeline

    folder = str(build_tiny_wan_pipeline(tmp_path_factory.mktemp("rc-wan")))
    store = Store(tmp_path_factory.mktemp("rc-wan-cache"))
    with keep_loaded():
        amf = extract(ref_video, extract_cfg(folder), runtime=RUNTIME, store=store)
        gen = guide(amf.hash, GuideConfig(**RUN), runtime=RUNTIME, store=store)
        same = inject(gen.hash, InjectConfig(prompt="a red circle"), runtime=RUNTIME, store=store)
    embs = gen.embeddings()
    own = torch.stack(WanRotaryPosEmbed(12, (1, 2, 2), 32)(torch.zeros(1, 16, 3, 4, 6)))  # the tiny model's
    assert len(embs) == 2 and all(e.shape == own.shape == (2, 1, 18, 1, 12) for e in embs.values())
    assert all(not torch.allclose(e, own, atol=1e-3) for e in embs.values())  # warped, then moved
    assert len(gen.losses) == 4 and all(np.isfinite(r["loss"]) for r in gen.losses)
    assert gen.inputs["method_settings"] == {"flow": "dis", "flow_smoothing": 1.0, "mse_weight": 0.1}
    assert np.abs(same.frames.astype(int) - gen.frames.astype(int)).max() <= 2  # the same tables replayed


def test_image_to_video_keeps_the_pictures_frame_out(ref_video, tmp_path_factory, monkeypatch):
    """CogVideoX 1.0-I2V: the latent is never changed, the picture's token frame keeps its warped tables (no
    delta), the later frames' tables move."""
    import cv2

    from ditflow.backbones.loaded import keep_loaded
    from ditflow.methods import ropecraft_guide
    from ditflow.tiny import build_tiny_cogvideox_i2v_pipeline

    folder = str(build_tiny_cogvideox_i2v_pipeline(tmp_path_factory.mktemp("rc-cog-i2v")))
    picture = tmp_path_factory.mktemp("rc-img") / "disc.png"
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    cv2.circle(img, (16, 16), 8, (0, 230, 255), -1)
    cv2.imwrite(str(picture), img)
    store = Store(tmp_path_factory.mktemp("rc-i2v-cache"))
    seen, call = [], ropecraft_guide.RoPECraftGuide.__call__

    def keep(self, x, i, t):
        before = x.clone()
        out, positions = call(self, x, i, t)
        seen.append((self, before, out))
        return out, positions

    monkeypatch.setattr(ropecraft_guide.RoPECraftGuide, "__call__", keep)
    with keep_loaded():
        amf = extract(ref_video, extract_cfg(folder), runtime=RUNTIME, store=store)
        gen = guide(amf.hash, GuideConfig(**RUN), image=str(picture), runtime=RUNTIME, store=store)
    assert len(seen) == 2 and all(torch.equal(before, out) for _, before, out in seen)
    tables, tokens = seen[0][0].tables, 6  # [q/k, cos/sin, N, D]; a token frame: 2x3
    for emb in gen.embeddings().values():
        assert torch.equal(emb.narrow(2, 0, tokens), tables.narrow(2, 0, tokens))
        assert not torch.equal(emb.narrow(2, tokens, 12), tables.narrow(2, tokens, 12))


@pytest.fixture(scope="module")
def sincos_amf(tiny_sincos, ref_video, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("rc-sincos"))
    return store.root, extract(ref_video, extract_cfg(tiny_sincos), runtime=RUNTIME, store=store).hash


def test_a_sincos_model_is_refused_before_loading(sincos_amf, no_model):
    cache, amf = sincos_amf
    code, out, err = cli(["guide", "--amf", amf, "-p", "a red circle", "--method", "ropecraft", "--cache", str(cache)])
    assert code == 2 and out == ""
    assert "sincos" in one_error_line(err, "--method ropecraft")


def test_raft_without_its_weights_is_one_line_naming_the_file(cog, tmp_path, monkeypatch, no_model):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache, amf = cog
    code, out, err = cli(["guide", "--amf", amf, "-p", "a red circle", "--method", "ropecraft", "--flow", "raft",
                          "--cache", str(cache)])
    line = one_error_line(err, str(tmp_path / "torch" / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"))
    assert code == 6 and out == "" and "--flow dis" in line and Path(tmp_path / "torch").exists() is False
