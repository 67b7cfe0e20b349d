"""The DiTFlow paper's benchmark on the user's DAVIS 2017 frames: a batch manifest from the layout.

    python -m ditflow.batch.davis DAVIS_ROOT --prompts benchmarks/davis/prompts.json --out manifest.jsonl

DAVIS 2017 (DAVIS-2017-trainval-480p.zip from https://davischallenge.org) unpacks to
DAVIS/JPEGImages/480p/<clip>/00000.jpg ...; each of the benchmark's 50 clips present there becomes one
manifest record (its three prompts, its frame range); a clip that is missing is listed in a warning on
stderr and left out, never a failure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import DitflowError, InputError
from ..fileio import check_target, write_text

LEVELS = ("easy", "medium", "hard")


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """The benchmark's clips: {"video", "frame_range", "prompts": {easy, medium, hard}} each."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        videos = data["videos"]
        for v in videos:
            if not (isinstance(v["video"], str) and len(v["frame_range"]) == 3 and set(LEVELS) <= set(v["prompts"])):
                raise ValueError(v)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not the benchmark's prompts file (videos with video, frame_range, prompts): {e}")
    return videos


def frames_folder(davis: Path, clip: str) -> Path:
    """Where DAVIS 2017 keeps a clip's 480p frames."""
    return davis / "JPEGImages" / "480p" / clip


def has_frames(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in folder.iterdir())


def manifest_records(davis: str | Path, videos: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(records for the clips present under `davis`, the names of those missing)."""
    davis = Path(davis).expanduser()
    if not (davis / "JPEGImages").is_dir():
        raise InputError(f"{davis} has no JPEGImages folder: give the DAVIS 2017 root (the folder DAVIS-2017-"
                         f"trainval-480p.zip unpacks to, holding JPEGImages/480p/<clip>/00000.jpg ...)")
    records, missing = [], []
    for v in videos:
        folder = frames_folder(davis, v["video"])
        if not has_frames(folder):
            missing.append(v["video"])
            continue
        records.append({"video": str(folder.absolute()), "prompt": [v["prompts"][k] for k in LEVELS],
                        "frame_range": list(v["frame_range"])})
    return records, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A `ditflow batch` manifest (JSONL) of the DiTFlow DAVIS benchmark.")
    ap.add_argument("davis", type=Path, help="DAVIS 2017 root (holding JPEGImages/480p/<clip>/)")
    ap.add_argument("--prompts", type=Path, default=Path("benchmarks/davis/prompts.json"))
    ap.add_argument("--out", type=Path, required=True, help="the manifest to write (.jsonl)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        check_target(args.out, args.overwrite)
        videos = read_prompts(args.prompts)
        records, missing = manifest_records(args.davis, videos)
        if missing:
            print(f"warning: {len(missing)} of {len(videos)} benchmark clips are not in {args.davis} and are skipped: "
                  f"{', '.join(missing)}", file=sys.stderr)
        if not records:
            raise InputError(f"none of the benchmark's {len(videos)} clips is in {args.davis}/JPEGImages/480p")
        write_text(args.out, "".join(json.dumps(r) + "\n" for r in records))
    except DitflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"{args.out}: {len(records)} clips x {len(LEVELS)} prompts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
