"""Plain helpers the tests share (fixtures are in conftest.py): sizes and synthetic videos, the CLI in-process,
the one-line error check, fake store objects and stage results, folder snapshots."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

from ditflow.config import ExtractConfig
from ditflow.store import Store, content_key

FRAMES, HEIGHT, WIDTH = 9, 32, 48


# -- inputs ---------------------------------------------------------------------------------------------
def moving_square(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH, step: int = 3) -> np.ndarray:
    """A white square moving right over a textured background: uint8 [T, H, W, 3]."""
    rng = np.random.default_rng(0)
    bg = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    out = np.repeat(bg[None], frames, axis=0)
    for t in range(frames):
        x = 2 + t * step
        out[t, 10:22, x : x + 12] = 255
    return out


def extract_cfg(model: str, **kw) -> ExtractConfig:
    return ExtractConfig(model=model, frames=FRAMES, height=HEIGHT, width=WIDTH, blocks=(1,), **kw)


def decreases_within_each_step(losses, opt_steps: int) -> bool:
    """Within every guidance step the loss after optimising is below the first evaluation."""
    by_step = {}
    for r in losses:
        by_step.setdefault(r["step"], []).append(r["loss"])
    assert by_step and all(len(v) == opt_steps for v in by_step.values())
    return all(v[-1] < v[0] for v in by_step.values())


# -- the CLI and its errors -------------------------------------------------------------------------------
def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run the real entry point (error mapping included) in-process: (exit code, stdout, stderr)."""
    from ditflow.cli.app import main

    monkeypatch.setattr(sys, "argv", ["ditflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def cli(args: list[str]) -> tuple[int, str, str]:
    """`run_cli` without capsys or monkeypatch, so module fixtures can use it too: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from ditflow.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(sys, "argv", ["ditflow", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
    return exit_info.value.code, out.getvalue(), err.getvalue()


@contextmanager
def deadline(seconds: int = 20) -> Iterator[None]:
    """Fail instead of hanging (no pytest-timeout here): SIGALRM interrupts an open() of a FIFO that blocks."""
    def expired(*_):
        raise AssertionError(f"still running after {seconds} s: an input was opened")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_error_line(err: str, text: str = "") -> str:
    """stderr's one line, an `error: ...` holding `text`, and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def assert_one_line_error(code, out: str, err: str, text: str, exit_code: int | None = None) -> None:
    """Exit non-zero (or `exit_code`), nothing on stdout, stderr exactly one `error: ...` line holding `text`."""
    assert code not in (0, None) and (exit_code is None or code == exit_code), (code, err)
    one_error_line(err, text)
    assert out == ""


def watch_latent_steps(monkeypatch) -> list:
    """(latent before, latent after) of each latent-mode guidance step, as LatentGuide.result sees them."""
    from ditflow.guides import LatentGuide

    steps, result = [], LatentGuide.result

    def keep(self, x, var, t):
        steps.append((x.detach().float().clone(), var.detach().float().clone()))
        return result(self, x, var, t)

    monkeypatch.setattr(LatentGuide, "result", keep)
    return steps


def assert_only_later_frames_moved(steps: list, axis: int) -> None:
    """In every (before, after) step, latent frame 0 along `axis` is unchanged and some later frame moved."""
    import torch

    assert steps
    for before, after in steps:
        rest = before.shape[axis] - 1
        assert torch.equal(after.narrow(axis, 0, 1), before.narrow(axis, 0, 1))
        assert not torch.equal(after.narrow(axis, 1, rest), before.narrow(axis, 1, rest))


# -- fakes ------------------------------------------------------------------------------------------------
def fake_gen(frames: int = 3, size: int = 16, value: int = 0) -> SimpleNamespace:
    """What guide/inject return, as far as the CLI reads it: a hash, a kind, a path and the frames."""
    video = np.full((frames, size, size, 3), value, np.uint8)
    video[:, : size // 2] = 200  # some structure, so the codecs have something to keep
    return SimpleNamespace(hash="ab" * 32, kind="gen", path=Path("/nowhere"), frames=video)


def put(store: Store, name: str, payload: bytes = b"x", parents=(), kind: str = "amf", **extra) -> str:
    """Publish a fake object whose inputs are {"name": name}; its hash is what the store would compute."""
    inputs = {"name": name}
    h = content_key(kind, inputs)
    with store.writer(h, kind, inputs, parents=list(parents), extra=extra or None) as folder:
        (folder / "data.bin").write_bytes(payload)
    return h


@lru_cache(maxsize=None)
def twin_names(kind: str = "amf") -> tuple[str, str, str]:
    """Two input names whose hashes share their first 6 hex characters, and that prefix (a birthday
    search: some thousands of sha256s)."""
    seen: dict[str, str] = {}
    i = 0
    while True:
        name = f"twin-{i}"
        prefix = content_key(kind, {"name": name})[:6]
        if prefix in seen:
            return seen[prefix], name, prefix
        seen[prefix] = name
        i += 1


# -- what a folder holds ------------------------------------------------------------------------------------
def tree(path: Path) -> dict:
    """What a folder holds: relative path -> bytes (files) or None (folders)."""
    if not path.exists():
        return {}
    return {p.relative_to(path).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (symlinks not followed) with what it is and a digest of file bytes."""
    out = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(top) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def entries(root: Path) -> dict[bytes, tuple]:
    """Every entry under (and including) `root`: kind, mode and, for files, bytes (names as bytes: any name is
    kept). FIFOs are never opened."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in [b"", *dirnames, *filenames]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[p] = ("file", st.st_mode, open(p, "rb").read())
            else:
                out[p] = (stat.S_IFMT(st.st_mode), st.st_mode, os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
    return out


def temporaries(root: Path) -> list[str]:
    return [os.fsdecode(p) for p in entries(root) if os.path.basename(p).startswith(b".tmp-")]
