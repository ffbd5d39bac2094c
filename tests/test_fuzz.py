"""The model fuzzer (scripts/fuzz_models.py): mutated Torch7 trees and ONNX graphs end in
a clean refusal or a run, never a traceback, a crash, a hang or a memory blow-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fuzz_models.py"


def fuzz(tmp_path: Path, cases: int, timeout: float) -> dict:
    report = tmp_path / "fuzz.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", str(cases), "--jobs", "2", "--json", str(report)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert report.exists(), result.stdout + result.stderr
    counts = json.loads(report.read_text())
    for fmt in ("t7", "onnx"):
        figures = counts[fmt]
        assert figures["refused"] + figures["ran"] == cases, (fmt, figures, result.stdout[-3000:])
    assert result.returncode == 0
    # The mutations reach both ends: some models are refused, some still run.
    assert sum(counts[fmt]["refused"] for fmt in counts) > 0 and sum(counts[fmt]["ran"] for fmt in counts) > 0
    return counts


def test_help_writes_nothing(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and "--cases" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_few_mutated_models_of_each_format(tmp_path):
    fuzz(tmp_path, cases=6, timeout=600)


@pytest.mark.slow
def test_a_thousand_mutated_models_of_each_format(tmp_path):
    fuzz(tmp_path, cases=1000, timeout=6 * 3600)
