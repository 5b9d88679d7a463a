"""`bench/study.py --smoke`: a whole tiny study through the real `optimize` command, taken apart from what it stored."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_whole_study_smoke_prints_and_appends_its_tables(tmp_path):
    results = tmp_path / "results.md"
    ran = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "study.py"), "--smoke", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    written = results.read_text()
    assert "## Whole study, `optimize run` end to end (smoke)" in written
    assert "- command: `python" in written and "--smoke" in written and "- machine: " in written
    passes = re.search(
        r"^\| cold +\| [\d.]+ s +\| 1 +\| 2 +\| (\d) +\| (\d) +\| 0 +\| 0\.\d{4} +\| no GPU", written, re.M
    )
    assert passes, written
    assert int(passes.group(1)) >= 1 and int(passes.group(1)) + int(passes.group(2)) == 2
    for part in ("compile", "train_steps", "validation", "bead_metrics", "database", "host"):
        row = re.search(rf"^\| {part} +\| ([\d.]+) +\| [\d.]+ +\| [\d.]+ % +\| [\d.]+ % +\|$", written, re.M)
        assert row and float(row.group(1)) > 0, (part, written)
    assert re.search(r"^\| wall × workers +\| [\d.]+ +\| +\| +\| 100 % +\|$", written, re.M), written
    assert re.search(
        r"^\| unet base 4 depth 2, 32x32x1, micro-batch 4, float32, eager +\| 1 +\| [\d.]+ +\|$", written, re.M
    )
    assert re.search(r"^\| optimize report +\| [\d.]+ s +\|$", written, re.M), written
