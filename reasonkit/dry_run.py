"""The data checks of ``reasonkit run RECIPE --dry-run`` (reasonkit/cli/run.py) for the sft, grpo and eval
stages: each reads the stage's data on its first rows, through the same loaders and format contract as a
real run, and returns what it checked; it raises on a problem.
"""

from __future__ import annotations

import dataclasses

from reasonkit.config import Recipe


def check_sft_data(recipe: Recipe, data, rows: int, stage) -> list[str]:
    from reasonkit.data import load_examples

    examples, report = load_examples(data, "train", need_trace=stage.traces)
    return [f"train data: {len(examples)} of {report.rows} rows read follow the format contract"]


def check_grpo_data(recipe: Recipe, data, rows: int, stage) -> list[str]:
    from reasonkit.data import load_prompt_rows, rl_split
    from reasonkit.grpo.scoring import check_columns, load_rewards
    from reasonkit.grpo.step_metrics import check_metrics_by

    split = rl_split(data)
    prompt_rows = load_prompt_rows(data, split)
    weighted = load_rewards(stage.rewards)
    check_columns(weighted, set(prompt_rows[0]))
    check_metrics_by(stage.metrics_by, prompt_rows)
    names = ", ".join(f"{r.name} x{r.weight}" for r in weighted)
    return [
        f"{split} prompts: {len(prompt_rows)} rows read, with columns {sorted(prompt_rows[0])}",
        f"rewards: {names}",
    ]


def check_eval_data(recipe: Recipe, data, rows: int, stage) -> list[str]:
    from reasonkit.data import load_examples
    from reasonkit.data.benchmarks import benchmark_name, load_benchmark
    from reasonkit.evaluate import default_verifier

    lines = [f"verifier: {stage.verifier or default_verifier(recipe)}"]
    for source in stage.benchmarks:
        problems = load_benchmark(dataclasses.replace(source, max_rows=rows))
        lines.append(f"benchmark {benchmark_name(source)}: {len(problems)} sample problems with gold answers")
    if not stage.benchmarks:
        examples, _ = load_examples(data, "test", need_trace=False)
        lines.append(f"test data: {len(examples)} sample problems with gold answers")
    return lines
