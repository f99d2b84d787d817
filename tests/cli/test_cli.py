"""`reasonkit --help` and every subcommand's help read as plain terminal text."""

import argparse

import pytest

from reasonkit.cli import build_parser, main

COMMANDS = [
    [],
    ["run"],
    ["validate"],
    ["rewards"],
    ["rewards", "list"],
    ["rewards", "check"],
    ["eval"],
    ["generate"],
]


def subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        (choices,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = choices[word]
    return parser


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "reasonkit")
def test_help_is_plain_text_and_says_what_each_option_does(words, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text  # no reStructuredText
    parser = subparser(words)
    assert parser.description, f"{' '.join(words)} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(choice.help for choice in action._choices_actions), words
        elif action.option_strings or action.dest != "help":
            assert action.help, f"{' '.join(words)} {action.option_strings or action.dest} has no help"


def test_top_level_help_lists_the_commands_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: reasonkit [-h] COMMAND ...")
    for command in ("run", "validate", "rewards", "eval", "generate"):
        assert f"\n    {command}" in text
    assert "reasonkit rewards check trl.rewards:accuracy_reward --data rows.jsonl" in text


@pytest.mark.parametrize("words", [["eval"], ["generate"], ["rewards", "check"]], ids=" ".join)
def test_completions_help_states_the_rule_the_rewards_follow(words):
    """rewards.convention: the reward's annotation, else the prompts' shape (not "else text")."""
    (action,) = [a for a in subparser(words)._actions if "--completions" in a.option_strings]
    assert "auto: its annotation, else the prompts' shape" in action.help
    assert "else text" not in action.help
