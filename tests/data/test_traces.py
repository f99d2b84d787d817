import json

import pytest

from reasonkit.config import DataConfig, DatasetSource
from reasonkit.data import DataError, load_examples

ROWS = [
    {"question": "What is 2 * 3?", "reasoning": "2 * 3 = 6.", "final": "6"},
    {"question": "What is 4 * 5?", "reasoning": "", "final": "20"},  # row 1: empty trace
    {"question": "What is 6 * 7?", "reasoning": "6 * 7 = 42.", "final": None},  # row 2: missing answer
    {"question": "What is 8 * 9?", "reasoning": "8 * 9 = 72.", "final": "72"},
]
COLUMNS = {"prompt_column": "question", "trace_column": "reasoning", "answer_column": "final"}


def jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(path, on_invalid="error", **columns) -> DataConfig:
    return DataConfig(train=DatasetSource(path=str(path), **columns), on_invalid=on_invalid)


def test_bad_rows_are_reported_by_number(tmp_path):
    with pytest.raises(DataError) as info:
        load_examples(config(jsonl(tmp_path, ROWS), **COLUMNS), "train", need_trace=True)
    message = str(info.value)
    assert "2 of 4 rows" in message and "row 1 (empty trace)" in message and "row 2 (empty answer)" in message
    assert "on_invalid: skip" in message


def test_skip_bad_rows_and_count_them(tmp_path):
    examples, report = load_examples(
        config(jsonl(tmp_path, ROWS), "skip", **COLUMNS), "train", need_trace=True
    )
    assert [e.answer for e in examples] == ["6", "72"] and report.skipped == 2 and report.rows == 4


def test_direct_answers_do_not_need_a_trace(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "reasoning"} for r in ROWS if r["final"]]
    examples, _ = load_examples(config(jsonl(tmp_path, rows), **COLUMNS), "train", need_trace=False)
    assert len(examples) == 3 and all(e.trace is None for e in examples)


def test_missing_columns_are_named_with_the_available_ones(tmp_path):
    with pytest.raises(DataError) as info:
        load_examples(config(jsonl(tmp_path, ROWS)), "train", need_trace=True)
    assert (
        "'prompt'" in str(info.value)
        and "'question'" in str(info.value)
        and "prompt_column" in str(info.value)
    )


@pytest.mark.parametrize("suffix", [".json", ".parquet", ".csv"])
def test_other_local_formats(tmp_path, suffix):
    import pandas as pd

    good = [r for r in ROWS if r["reasoning"] and r["final"]]
    path = tmp_path / f"data{suffix}"
    frame = pd.DataFrame(good)
    {
        ".json": lambda: frame.to_json(path, orient="records"),
        ".parquet": lambda: frame.to_parquet(path),
        ".csv": lambda: frame.to_csv(path, index=False),
    }[suffix]()
    examples, _ = load_examples(config(path, **COLUMNS), "train", need_trace=True)
    assert [e.prompt for e in examples] == [r["question"] for r in good]


def test_messages_column(tmp_path):
    rows = [
        {
            "chat": [
                {"role": "user", "content": "What is 2 * 3?"},
                {"role": "assistant", "content": "<think>2 * 3 = 6.</think>6"},
            ]
        },
        {
            "chat": [
                {"role": "user", "content": "What is 4 * 5?"},
                {"role": "assistant", "reasoning_content": "4 * 5 = 20.", "content": "20"},
            ]
        },
        {
            "chat": [
                {"role": "user", "content": "What is 1 * 1?"},
                {"role": "assistant", "content": "<think>unclosed 1"},
            ]
        },
    ]
    examples, report = load_examples(
        config(jsonl(tmp_path, rows), "skip", messages_column="chat"), "train", need_trace=True
    )
    assert [(e.prompt, e.trace, e.answer) for e in examples] == [
        ("What is 2 * 3?", "2 * 3 = 6.", "6"),
        ("What is 4 * 5?", "4 * 5 = 20.", "20"),
    ]
    assert report.skipped == 1


def test_think_tags_inside_fields_are_rejected(tmp_path):
    rows = [{"prompt": "p", "trace": "a</think>b", "answer": "1"}]
    with pytest.raises(DataError, match="think tag"):
        load_examples(config(jsonl(tmp_path, rows)), "train", need_trace=True)


def test_unreadable_source_gives_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="could not load dataset"):
        load_examples(config(tmp_path / "missing.jsonl"), "train", need_trace=True)
    bad = tmp_path / "data.txt"
    bad.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(config(bad), "train", need_trace=True)


def test_builtin_task_needs_no_files():
    train, _ = load_examples(DataConfig(task="arithmetic"), "train", need_trace=True)
    test, _ = load_examples(DataConfig(task="arithmetic"), "test", need_trace=False)
    assert len(test) == 500 and test[0].trace is None and train[0].trace
    assert not {e.prompt for e in train} & {e.prompt for e in test}


def test_prompt_rows_for_rl_keep_every_column_and_report_empty_prompts(tmp_path):
    from reasonkit.data import load_prompt_rows

    rows = [
        {"prompt": "What is 2 * 3?", "answer": "6", "tests": "[]"},
        {"prompt": " ", "answer": "1", "tests": "[]"},
    ]
    with pytest.raises(DataError, match=r"1 of 2 rows are unusable: row 1 \(empty prompt\)"):
        load_prompt_rows(config(jsonl(tmp_path, rows)), "train")
    kept = load_prompt_rows(config(jsonl(tmp_path, rows), "skip"), "train")
    assert kept == [{"prompt": "What is 2 * 3?", "answer": "6", "tests": "[]"}]
