"""Helpers of the reliability tests: a fake stage result, folder snapshots, the one-line error check."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def fake_gen(frames: int = 3, size: int = 16, value: int = 0) -> SimpleNamespace:
    """What guide/inject return, as far as the CLI reads it: a hash, a kind, a path and the frames."""
    video = np.full((frames, size, size, 3), value, np.uint8)
    video[:, : size // 2] = 200  # some structure, so the codecs have something to keep
    return SimpleNamespace(hash="ab" * 32, kind="gen", path=Path("/nowhere"), frames=video)


def snapshot(root: Path) -> dict[bytes, tuple]:
    """Every entry under (and including) `root`: kind, mode and, for files, bytes. FIFOs are never opened."""
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
    return [os.fsdecode(p) for p in snapshot(root) if os.path.basename(p).startswith(b".tmp-")]


def assert_one_line_error(code, out: str, err: str, text: str, exit_code: int | None = None) -> None:
    """Exit non-zero (or `exit_code`), nothing on stdout, stderr exactly one `error: ...` line holding `text`."""
    assert code not in (0, None) and (exit_code is None or code == exit_code), (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], err
    assert "Traceback" not in err and out == ""
