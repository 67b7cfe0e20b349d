"""The scale benchmark's models are the released ones' sizes, and its paper-style baseline computes DiTFlow's loss."""
import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# parameters of the released transformers (their model cards / safetensors indexes), in billions
RELEASED = {"2b": 1.69, "5b": 5.57, "wan-1.3b": 1.42, "wan-14b": 14.29, "wan2.2-a14b": 14.29, "wan2.2-ti2v-5b": 5.00}  # A14B: each expert


@pytest.mark.parametrize("name", list(RELEASED))
def test_configs_build_the_released_transformers(name):
    import diffusers

    from ditflow.released import released_configs

    config = dict(released_configs()[name]["transformer"])
    cls = getattr(diffusers, config.pop("_class_name"))
    with torch.device("meta"):  # shapes only: nothing allocated
        model = cls(**config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(RELEASED[name], abs=0.01)


def test_the_benchmarks_models_are_presets_with_one_layer_text_encoders():
    from ditflow.backbones import PRESETS

    assert set(bench.MODELS) <= set(PRESETS)
    for name in bench.MODELS:
        configs = bench.build_folder.__globals__["configs_for"](name, quick=True)
        assert configs["transformer"]["num_layers"] == 2
        text = configs["text_encoder"]
        assert text.get("num_layers", text.get("num_hidden_layers", text.get("text_config", {}).get("num_hidden_layers"))) == 1


def test_the_paper_style_loss_is_ditflows_flow_loss(monkeypatch):
    from ditflow import guides, losses

    monkeypatch.setattr(losses, "LOSSES", dict(losses.LOSSES))
    monkeypatch.setattr(guides.Guide, "stop_early", True)
    g = torch.Generator().manual_seed(0)
    grid = (3, 2, 3)
    q, k = torch.randn(2, 18, 4, generator=g), torch.randn(2, 18, 4, generator=g)
    ref = torch.randint(-1, 2, (3, 3, 6, 2), generator=g).float()
    ours = losses.FlowLoss(amf={0: ref}, grid=grid, temperature=2.0).block_loss(0, q, k)
    bench.paper_style()
    assert guides.Guide.stop_early is False
    paper = losses.LOSSES["flow"](amf={0: ref}, grid=grid, temperature=2.0).block_loss(0, q, k)
    torch.testing.assert_close(paper, ours)


def test_ratios_are_against_the_paper_row_of_the_same_model_and_frames():
    row = dict(peak_bytes=2.0, peak_above_model_bytes=1.0, seconds_per_guided_step=1.0, seconds_sampling=4.0)
    rows = [dict(model="5b", frames=24, variant="paper", **row),
            dict(model="5b", frames=24, variant="fast", **{**row, "seconds_per_guided_step": 0.25, "peak_bytes": 1.0}),
            dict(model="5b", frames=49, variant="fast", **row)]
    bench.ratios(rows)
    assert rows[1]["vs_paper"]["seconds_per_guided_step"] == 0.25 and rows[1]["vs_paper"]["peak_bytes"] == 0.5
    assert "vs_paper" not in rows[2]  # no baseline at 49 frames
