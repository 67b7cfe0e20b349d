"""A failed write or removal in the cache (a full disk, a read-only mount, no permission) as one OutputError
line naming the cache, instead of a raw OSError (or safetensors' wrapping of one) reported as a bug."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import OutputError
from ..fileio import printable

# safetensors reports an OS error as text only: "... I/O error: No space left on device (os error 28) ..."
_SAFETENSORS_IO = re.compile(r"I/O error: (.+?) \(os error \d+\)")
HINT = "free some space or fix its permissions, or choose another --cache / DITFLOW_CACHE"


def io_reason(e: BaseException) -> str | None:
    """The operating system's reason when `e` is a failed file operation, else None (a bug stays a bug).
    SafetensorError is matched by name: importing safetensors here would slow every command's start."""
    if isinstance(e, OSError):
        return e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
    if type(e).__name__ == "SafetensorError":
        match = _SAFETENSORS_IO.search(str(e))
        return match.group(1) if match else None
    return None


def write_error(root: Path, reason: str) -> OutputError:
    return OutputError(f"cannot write to cache {printable(root)}: {printable(reason)}; nothing was published; {HINT}")


def remove_error(root: Path, h: str, reason: str) -> OutputError:
    return OutputError(f"cannot remove {h[:12]} from cache {printable(root)}: {printable(reason)}; nothing was removed; "
                       f"fix the cache's permissions (or mount it writable)")


__all__ = ["io_reason", "write_error", "remove_error"]
