"""`make bench --quick` runs every section end to end (both sides of each comparison, for real) and
writes its report. Not a timing test: the figures are not checked, only that each was measured."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_measures_every_section(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for heading in ["## GRPO step", "## Rollout", "## Reward scoring", "## SFT", "## Log-prob pass memory"]:
        assert heading in report, report
    assert "failed" not in report and "nan" not in report, report
    assert "python benchmarks/bench.py --quick" in report
