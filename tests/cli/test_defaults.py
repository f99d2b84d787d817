"""Flags that mirror a recipe field default to the field's default: a command and a recipe agree."""

import argparse
import dataclasses

import pytest

from reasonkit.cli import build_parser
from reasonkit.eval.generate import GenerateSettings
from reasonkit.eval.schema import BenchmarkSource, EvalStage

# Each command's flags by the schemas they mirror, first match wins (--format is a BenchmarkSource's).
MIRRORED = {
    "eval": [EvalStage, BenchmarkSource],
    "generate": [GenerateSettings, BenchmarkSource],
}
# Flags whose field has another name.
FIELD_OF = {"completions": "verifier_completions"}
# Flags named like a field that deliberately default otherwise; the reason is beside each flag.
OWN_DEFAULTS = {
    ("eval", "verifier"),  # the field's null means "the recipe's GRPO verifier, else exact_answer"
    ("eval", "seed"),  # the field's null is unseeded sampling; a command run twice should agree
    ("generate", "split"),  # teacher prompts are training data, benchmarks are test data
}


def options(command: str) -> dict[str, argparse.Action]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a for a in sub.choices[command]._actions if a.option_strings and a.dest != "help"}


def mirrored_flags(command: str):
    for dest, action in options(command).items():
        name = FIELD_OF.get(dest, dest)
        for schema in MIRRORED[command]:
            if name in {f.name for f in dataclasses.fields(schema)}:
                yield dest, action, schema, next(f for f in dataclasses.fields(schema) if f.name == name)
                break


def field_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


@pytest.mark.parametrize("command", sorted(MIRRORED))
def test_flags_that_mirror_a_field_default_to_its_default(command):
    checked = []
    for dest, action, schema, field in mirrored_flags(command):
        if (command, dest) in OWN_DEFAULTS:
            continue
        assert action.default == field_default(field), (
            f"{command} {action.option_strings[0]}: default {action.default!r}, "
            f"{schema.__name__}.{field.name} says {field_default(field)!r}"
        )
        checked.append(dest)
    # Not true by having found nothing to compare.
    assert {"num_samples", "temperature", "top_p", "max_new_tokens", "completions", "format"} <= set(checked)


def test_eval_defaults_are_the_eval_stage_s():
    """The two that once drifted: the eval stage generates 256 tokens, 128 completions per call."""
    parsed = build_parser().parse_args(["eval", "model"])
    assert (parsed.max_new_tokens, parsed.batch_size) == (EvalStage().max_new_tokens, EvalStage().batch_size)


def test_the_own_defaults_are_flags_that_exist():
    for command, dest in OWN_DEFAULTS:
        assert dest in options(command), (command, dest)
