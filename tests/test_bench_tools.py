"""The measuring tools of ``benchmarks/`` still run against the code they measure (small files, as
subprocesses, the way they are used): the timeline of an import, and the replay of recorded stage rows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def tool(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *(str(a) for a in args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def generated(tmp_path: Path, name: str, *options: str) -> Path:
    out = tmp_path / name
    tool(BENCHMARKS / "generate_csv.py", "--rows", "300", *options, "--out", out, cwd=tmp_path)
    return out


def test_the_timeline_shows_each_process_of_an_import(tmp_path: Path) -> None:
    first = generated(tmp_path, "first.csv", "--seed", "1")
    later = generated(tmp_path, "later.csv", "--seed", "2", "--change-open-pct", "10", "--from-seed", "1")
    out = tool(BENCHMARKS / "timeline.py", first, later, "--tmp-dir", tmp_path, cwd=tmp_path)
    for name in ("first", "later"):
        assert re.search(rf"^== {name}\.csv: [\d.]+ s wall, exit 0, CPU [\d.]+ s$", out, re.M), out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("s "))
    assert "gateway" in header
    assert len(re.findall(r"^ total +[\d.]+$", out, re.M)) == 2, out


def test_the_replay_applies_recorded_stage_rows(tmp_path: Path) -> None:
    first = generated(tmp_path, "first.csv", "--seed", "1")
    later = generated(tmp_path, "later.csv", "--seed", "2", "--change-open-pct", "10", "--from-seed", "1")
    replay = BENCHMARKS / "replay_stage.py"
    assert "recorded 300 rows" in tool(replay, "record", first, tmp_path / "first.batches", cwd=tmp_path)
    tool(replay, "record", later, tmp_path / "later.batches", cwd=tmp_path)
    out = tool(replay, "replay", tmp_path / "first.batches", tmp_path / "later.batches", cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("first.batches: per batch ") and "created 300, updated 0, closed 0" in lines[0]
    assert lines[1].startswith("later.batches: ") and "created 0, updated 30, closed 0" in lines[1]
