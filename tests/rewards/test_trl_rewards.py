"""Rewards written for TRL and open-r1 work unchanged: ``trl.rewards`` as installed, and test copies of
open-r1's shape (``open_r1_style.py``), in the reward pool, in a recipe and through ``rewards check``."""

import json
from pathlib import Path

import pytest
import trl.rewards

import rewards
from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.grpo.schema import RewardSpec
from reasonkit.grpo.scoring import RewardError, RewardScorer, check_columns, load_rewards
from reasonkit.recipe import build_recipe
from rewards.convention import call_reward, describe_error, shape_for

OPEN_R1 = str(Path(__file__).parents[1] / "helpers" / "open_r1_style.py")
# Every reward trl.rewards exports, as a recipe would name it (factories with their arguments).
TRL_REWARDS = {
    "accuracy_reward": {},
    "reasoning_accuracy_reward": {},
    "think_format_reward": {},
    "get_cosine_scaled_reward": {"max_len": 64},
    "get_repetition_penalty_reward": {"ngram_size": 3, "max_penalty": -1.0},
    "get_soft_overlong_punishment": {"max_completion_len": 16, "soft_punish_cache": 8},
}
RIGHT, BOXED, WRONG = (
    "<think>6 * 7 = 42.</think>42",
    "<think>6 * 7 = 42.</think>\\boxed{42}",
    "<think>.</think>\\boxed{41}",
)


def test_trl_reward_list_is_everything_trl_rewards_exports():
    exported = {name for names in trl.rewards._import_structure.values() for name in names}
    assert exported == set(TRL_REWARDS)


def score(specs: list[RewardSpec], prompts, completions, columns, workers=2):
    weighted = load_rewards(specs)
    check_columns(weighted, {"prompt", *columns})
    scorer = RewardScorer(weighted, workers=workers, timeout=30)
    try:
        return scorer.score(
            prompts, completions, {**columns, "completion_ids": [[1] * len(c) for c in completions]}
        )
    finally:
        scorer.close()


@pytest.mark.parametrize("prompt", ["What is 6 * 7?", [{"role": "user", "content": "What is 6 * 7?"}]])
def test_every_trl_reward_scores_in_worker_processes_with_string_or_conversational_prompts(prompt):
    specs = [RewardSpec(f"trl.rewards:{name}", args=args) for name, args in TRL_REWARDS.items()]
    scores = score(specs, [prompt] * 3, [RIGHT, BOXED, WRONG], {"solution": ["42"] * 3})
    assert not any(scores.failed.values()), scores.failed
    by = {name.split(":")[1]: values for name, values in scores.by_reward.items()}
    assert by["think_format_reward"] == [1.0, 1.0, 1.0]
    assert by["accuracy_reward"] == [0.0, 1.0, 0.0]  # TRL's wants the answer boxed (or after an anchor)
    assert by["reasoning_accuracy_reward"] == [0.0, 1.0, 0.0]
    assert by["get_cosine_scaled_reward"][1] > 0 > by["get_cosine_scaled_reward"][2]
    assert by["get_soft_overlong_punishment"] == [-1.0, -1.0, -1.0]  # 28+ "tokens" against a limit of 16
    assert all(-1.0 <= v <= 0.0 for v in by["get_repetition_penalty_reward"])


def test_trl_rewards_are_conversational_by_their_annotation_whatever_the_prompts():
    assert shape_for(trl.rewards.think_format_reward, "auto", "a string prompt")[0] == "conversational"
    built = rewards.registry.build("trl.rewards:get_cosine_scaled_reward", {"max_len": 10})
    assert shape_for(built, "auto", "a string prompt")[0] == "conversational"
    assert rewards.required_columns(built) == ["solution"]


def test_trl_reward_factories_are_named_in_a_recipe_with_their_arguments():
    def recipe(reward):
        return build_recipe(
            {
                "output_dir": "x",
                "model": {"tiny": {}},
                "data": {"task": "arithmetic"},
                "stages": {"grpo": {"rewards": [reward]}},
            }
        )

    spec = {
        "name": "trl.rewards:get_soft_overlong_punishment",
        "args": {"max_completion_len": 8, "soft_punish_cache": 4},
    }
    (reward,) = load_rewards(recipe(spec).stages["grpo"].rewards)
    assert reward.fn(completion_ids=[[0] * 4, [0] * 6, [0] * 9]) == [0.0, -0.5, -1.0]
    with pytest.raises(ConfigError, match=r"is a reward factory; give it \['soft_punish_cache'\]"):
        recipe({**spec, "args": {"max_completion_len": 8}})
    with pytest.raises(ConfigError, match=r"args.max_len: unknown key; did you mean 'max_completion_len'"):
        recipe({**spec, "args": {**spec["args"], "max_len": 3}})


def test_trl_reward_naming_a_missing_column_is_refused_before_training_with_the_columns_there_are():
    weighted = load_rewards([RewardSpec("trl.rewards:accuracy_reward")])
    with pytest.raises(
        Exception,
        match=r"needs dataset column\(s\) \['solution'\]; the prompt data has \['answer', 'prompt'\]",
    ):
        check_columns(weighted, {"prompt", "answer"})


def test_open_r1_style_rewards_score_conversational_completions():
    names = ["accuracy_reward", "format_reward", "tag_count_reward", "len_reward"]
    specs = [RewardSpec(f"{OPEN_R1}:{name}") for name in names]
    prompt = [{"role": "system", "content": "Think first."}, {"role": "user", "content": "What is 6 * 7?"}]
    scores = score(specs, [prompt] * 3, [BOXED, RIGHT, WRONG + "!"], {"solution": ["$42$"] * 3})
    assert not any(scores.failed.values()), scores.failed
    by = {name.split(":")[1]: values for name, values in scores.by_reward.items()}
    assert by["accuracy_reward"] == [1.0, 0.0, 0.0] and by["format_reward"] == [1.0, 1.0, 1.0]
    assert by["tag_count_reward"] == [1.0, 1.0, 1.0]
    # Called one completion at a time (the pool), a group-relative reward sees a group of one: 0.
    assert by["len_reward"] == [0.0, 0.0, 0.0]


def test_a_conversational_reward_given_text_says_which_shape_it_got_and_how_to_change_it():
    with pytest.raises(RewardError) as raised:
        score([RewardSpec(f"{OPEN_R1}:format_reward")], ["What is 6 * 7?"] * 2, [RIGHT, WRONG], {})
    message = str(raised.value)
    assert (
        "failed on every sample" in message and "raised TypeError: string indices must be integers" in message
    )
    assert (
        "(it was given text completions: the prompts are strings; a reward written for conversational"
        in message
    )
    assert (
        "needs `completions: conversational` on it in the recipe, or --completions conversational)" in message
    )
    fixed = score(
        [RewardSpec(f"{OPEN_R1}:format_reward", completions="conversational")],
        ["What is 6 * 7?"] * 2,
        [RIGHT, WRONG],
        {},
    )
    assert fixed.by_reward[f"{OPEN_R1}:format_reward"] == [1.0, 1.0]


def test_a_reward_without_kwargs_is_told_what_trl_passes():
    def strict(prompts, completions):
        return [1.0 for _ in completions]

    with pytest.raises(TypeError) as raised:
        call_reward(strict, ["q"], ["a"], {})
    assert "a reward takes **kwargs for those it does not read" in describe_error(raised.value)


def test_builtin_rewards_accept_both_shapes():
    prompts, completions = in_both_shapes(["What is 6 * 7?"] * 2, [RIGHT, WRONG])
    for name in ("exact_answer", "math", "think_format", "think_tags"):
        fn = rewards.get(name)
        text = fn(prompts["text"], completions["text"], answer=["42", "42"])
        assert fn(prompts["conversational"], completions["conversational"], answer=["42", "42"]) == text, name


def in_both_shapes(prompts, completions):
    from rewards.convention import in_shape

    shaped = {shape: in_shape(shape, prompts, completions) for shape in ("text", "conversational")}
    return {k: v[0] for k, v in shaped.items()}, {k: v[1] for k, v in shaped.items()}


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


SOLUTION_ROWS = [
    {"prompt": "Half of one?", "solution": "One half: $\\boxed{\\frac{1}{2}}$.", "difficulty": 1},
    {"prompt": "What is 3 + 4?", "solution": "$7$", "difficulty": 2},
]


def conversational(rows):
    return [{**r, "prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows]


@pytest.mark.parametrize("name", TRL_REWARDS)
def test_rewards_check_runs_every_trl_reward_without_a_failure(name, tmp_path, capsys):
    args = [f"--arg={k}={v}" for k, v in TRL_REWARDS[name].items()]
    if name in ("accuracy_reward", "reasoning_accuracy_reward", "get_cosine_scaled_reward"):
        args += ["--data", write_rows(tmp_path / "rows.jsonl", SOLUTION_ROWS)]
    code = main(["rewards", "check", f"trl.rewards:{name}", *args])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 1: it has holes (below), not that it failed
    if not name.startswith(("get_repetition", "get_soft_overlong")):  # those read completion_ids only
        assert "completions given as conversational (declared by its `completions` annotation)" in out
    assert "the reward raised" not in out and "REFUSED REFERENCE" not in out, out


def test_rewards_check_finds_the_holes_trl_rewards_have(tmp_path, capsys):
    """What the batteries find in TRL 1.16's own rewards: not failures to call them, real leniency."""
    assert main(["rewards", "check", "trl.rewards:think_format_reward"]) == 1
    out = capsys.readouterr().out
    assert "HOLE: row 0 (prompt 'What is 6 * 7?'), empty answer: scored 1.0" in out
    assert main(["rewards", "check", "trl.rewards:accuracy_reward"]) == 1
    out = capsys.readouterr().out  # it reads the answer anywhere, the reasoning included
    assert "HOLE: row 1 (prompt 'Simplify 2/4.'), answer only inside the think block: scored 1.0" in out


@pytest.mark.parametrize("shape", ["conversational", "text"])
def test_rewards_check_runs_open_r1_style_rewards_on_rows_with_a_solution_column(shape, tmp_path, capsys):
    data = write_rows(
        tmp_path / "rows.jsonl", conversational(SOLUTION_ROWS) if shape == "conversational" else SOLUTION_ROWS
    )
    why = "the prompts are message lists" if shape == "conversational" else "set with --completions"
    for name, checks in [
        ("accuracy_reward", "answer"),
        ("len_reward", "answer"),
        ("format_reward", "format"),
        ("tag_count_reward", "format"),
    ]:
        args = ["rewards", "check", f"{OPEN_R1}:{name}", "--data", data]
        if shape == "text" and name in ("format_reward", "tag_count_reward"):
            args += ["--completions", "conversational"]  # unannotated, string prompts: say what it reads
        code = main(args)
        out = capsys.readouterr().out
        assert (
            f"{checks} battery" in out and "the reward raised" not in out and "REFUSED REFERENCE" not in out
        ), out
        if name in ("format_reward", "tag_count_reward"):
            assert f"completions given as conversational ({why})" in out
        if name in ("accuracy_reward", "format_reward"):  # the others are shaping rewards, lenient by design
            assert code == 0 and "0 hole(s)" in out, out
    assert "5 rows" in main_output(["rewards", "check", f"{OPEN_R1}:accuracy_reward", "--data", data], capsys)


def main_output(args, capsys) -> str:
    main(args)
    return capsys.readouterr().out


def test_rewards_check_without_data_for_rewards_that_need_no_column(capsys):
    for name in ("format_reward", "tag_count_reward"):
        code = main(["rewards", "check", f"{OPEN_R1}:{name}", "--completions", "conversational"])
        out = capsys.readouterr().out
        assert "completions given as conversational (set with --completions)" in out
        assert "the reward raised" not in out and "REFUSED REFERENCE" not in out, out
        # tag_count is partial credit by design: it pays for tags whatever surrounds them
        assert (code, "0 hole(s)" in out) == ((0, True) if name == "format_reward" else (1, False)), out


def test_rewards_check_data_missing_the_column_a_trl_reward_needs(tmp_path, capsys):
    data = write_rows(tmp_path / "rows.jsonl", [{"prompt": "q", "answer": "1"}])
    assert main(["rewards", "check", "trl.rewards:accuracy_reward", "--data", data]) == 2
    assert "has no column(s) ['solution'] (it has ['answer', 'prompt'])" in capsys.readouterr().err
