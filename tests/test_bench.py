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


def test_write_replaces_only_its_own_block_of_benchmarks_md():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import markers, replace_block

    (begin, end), (vllm_begin, vllm_end) = markers("bench"), markers("bench-vllm")
    document = f"intro\n{begin}\nold tables\n{end}\nhand-written\n{vllm_begin}\nold vLLM\n{vllm_end}\ntail\n"
    new = f"{vllm_begin}\nnew vLLM\n{vllm_end}\n"
    assert replace_block(document, "bench-vllm", new) == (
        f"intro\n{begin}\nold tables\n{end}\nhand-written\n{new}tail\n"
    )
    # a block the document lacks is appended
    assert replace_block("intro\n", "bench-vllm", new) == f"intro\n\n{new}"
