"""Hub access without a network (reasonkit/hub.py): commands run in a process that has none
(tests/helpers/offline_cli.py), on a hub cache built here from the tiny test model and a small benchmark."""

import json
import shutil
from pathlib import Path

import pytest

from reasonkit import hub
from tests.helpers.offline_cli import run_offline

CACHED_MODEL, CACHED_BENCHMARK = "someone/tiny-model", "someone/tiny-bench"
FIXES = ("local path", "HF_HUB_OFFLINE=1")
RETRY_WORDS = ("Retrying", "retry", "huggingface_hub", "Traceback")


def test_hub_ids_are_told_from_local_paths(tmp_path):
    assert hub.is_hub_id("Qwen/Qwen2.5-1.5B-Instruct") and hub.is_hub_id("gsm8k")
    (tmp_path / "org").mkdir()
    for local in ["data/train.jsonl", "runs/demo/sft/model", str(tmp_path / "org"), "./model", "a b"]:
        assert not hub.is_hub_id(local), local


@pytest.fixture(scope="module")
def warm_hf_home(tmp_path_factory, tiny_model_dir):
    """A hub cache holding CACHED_MODEL and CACHED_BENCHMARK as downloads would have left them: the model's
    files in a snapshot that refs/main points to, the benchmark prepared by datasets' own builder under
    the name the hub id maps to."""
    from datasets.packaged_modules.json.json import Json

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--someone--tiny-model"
    commit = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    rows = home / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"What is {a} * 3?", "answer": str(3 * a)}) + "\n" for a in (2, 3))
    )
    builder = Json(
        cache_dir=str(home / "prepare"),
        dataset_name="tiny-bench",
        data_files={"test": str(rows)},
        hash="0" * 16,
    )
    builder.download_and_prepare()
    shutil.copytree(
        builder.cache_dir, home / "datasets" / "someone___tiny-bench" / "default" / "0.0.0" / ("0" * 16)
    )
    return home


def eval_command(model: str, benchmark: str, out: Path) -> list[str]:
    return [
        "eval", model, "--benchmark", benchmark, "--engine", "transformers", "--max-new-tokens", "4",
        "--output", str(out),
    ]  # fmt: skip


def assert_one_message(result: dict, what: str, name: str, why: str = "cannot be reached") -> None:
    """The command failed with reasonkit's message naming ``name``, why the hub was not asked, and both
    fixes, and nothing else on stderr: no retries, no library warnings, no traceback."""
    assert result["rc"] == 2, result
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1, result["stderr"]
    message = lines[0]
    assert message.startswith(f"reasonkit: error: {what} {name!r} is a Hugging Face Hub id"), message
    assert why in message and all(fix in message for fix in FIXES), message


def test_without_a_network_each_hub_id_fails_at_once_and_a_cached_one_loads(
    tmp_path, warm_hf_home, tiny_model_dir
):
    dry_run, run, cached, benchmark, teacher, puzzles = run_offline(
        [
            ["run", "recipes/qwen2.5_1.5b_math_r1.yaml", "--dry-run"],
            ["run", "recipes/qwen2.5_1.5b_math_r1.yaml", f"output_dir={tmp_path / 'run'}"],
            eval_command(CACHED_MODEL, CACHED_BENCHMARK, tmp_path / "cached"),
            eval_command(str(tiny_model_dir), "HuggingFaceH4/MATH-500", tmp_path / "eval"),
            ["generate", "Qwen/Qwen2.5-1.5B-Instruct", "--prompts", "recipes/samples/math500_like.jsonl",
             "--output", str(tmp_path / "traces.jsonl")],
            ["run", "recipes/trm_sudoku_extreme.yaml", f"output_dir={tmp_path / 'trm'}"],
        ],
        warm_hf_home,
    )  # fmt: skip
    # One request decided hub access for the whole process: the first command's; no retries after it.
    lookups = [a for a in dry_run["network"] if a.startswith("getaddrinfo")]
    assert lookups == ["getaddrinfo huggingface.co:443"] and len(dry_run["network"]) <= 2, dry_run["network"]
    assert [r["network"] for r in (run, cached, benchmark, teacher, puzzles)] == [[]] * 5

    # The dry run: one FAILED line for the model and one per stage, each naming its hub id.
    assert dry_run["rc"] == 1
    failed = [line.strip() for line in dry_run["stdout"].splitlines() if "FAILED" in line]
    names = ["model 'Qwen/Qwen2.5-1.5B-Instruct'", *["dataset 'open-r1/OpenR1-Math-220k'"] * 2]
    names.append("benchmark 'HuggingFaceH4/MATH-500'")
    assert len(failed) == len(names), dry_run["stdout"]
    for line, name in zip(failed, names):
        assert line.startswith(f"FAILED: {name} is a Hugging Face Hub id"), line
        assert "cannot be reached" in line and all(fix in line for fix in FIXES), line
    assert not any(word in dry_run["stderr"] for word in RETRY_WORDS), dry_run["stderr"]

    assert_one_message(run, "tokenizer", "Qwen/Qwen2.5-1.5B-Instruct")
    assert_one_message(benchmark, "benchmark", "HuggingFaceH4/MATH-500")
    assert_one_message(teacher, "tokenizer", "Qwen/Qwen2.5-1.5B-Instruct")
    assert_one_message(puzzles, "puzzle file", "sapientinc/sudoku-extreme")

    # What the cache holds loads without the hub, and the console says where it came from.
    assert cached["rc"] == 0, cached["stderr"]
    assert "tiny-bench  2" in cached["stdout"]
    assert "hub ids are read from the local cache" in cached["stderr"]


def test_with_hf_hub_offline_the_cache_is_read_without_any_request(tmp_path, warm_hf_home):
    cached, missing = run_offline(
        [
            eval_command(CACHED_MODEL, CACHED_BENCHMARK, tmp_path / "cached"),
            eval_command(CACHED_MODEL, "HuggingFaceH4/MATH-500", tmp_path / "missing"),
        ],
        warm_hf_home,
        HF_HUB_OFFLINE="1",
    )
    assert cached["network"] == [] and missing["network"] == []
    assert cached["rc"] == 0, cached["stderr"]
    assert "tiny-bench  2" in cached["stdout"]
    assert_one_message(missing, "benchmark", "HuggingFaceH4/MATH-500", why="HF_HUB_OFFLINE is set")
