"""The re-noising probe: where a re-noised start joins the sampler's schedule, and what it reads off the shipped
toy model."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("probe_renoise", Path(__file__).resolve().parents[1] / "benchmarks" / "probe_renoise.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_first_step_joins_the_schedule_at_or_below_t0():
    timesteps = [999, 979, 959, 939]
    assert probe.first_step(timesteps, 999) == 0
    assert probe.first_step(timesteps, 960) == 2
    assert probe.first_step(timesteps, 939) == 3
    with pytest.raises(ValueError, match="below every sampler timestep"):
        probe.first_step(timesteps, 900)


@pytest.mark.shipped
def test_probe_keeps_every_shape_when_barely_noised(tmp_path, monkeypatch):
    out = tmp_path / "renoise.json"
    monkeypatch.setattr(sys, "argv", ["probe_renoise.py", "--per-shape", "1", "--timesteps", "20", "--seeds", "0",
                                      "--out", str(out)])
    probe.main()
    (row,) = json.loads(out.read_text())["rows"]
    # t0 = 20 is one DDIM step from a clean VAE latent: the VAE round trip keeps every shape (check_vae.py)
    assert row == {"t0": 20, "circle": 1.0, "triangle": 1.0, "bar": 1.0, "column": 1.0}
