"""`reasonkit validate` (and so `--dry-run` and `run`) refuses a `tools:` section that cannot work, in an
sft or eval stage and in `reasonkit eval`, saying what to fix."""

import json

import pytest
from transformers import AutoTokenizer

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.models import TINY_CHAT_TEMPLATE, load_tokenizer
from reasonkit.recipe import build_recipe
from reasonkit.tools.template import template_problems
from tests.conftest import TINY_SIZES

NO_DOCSTRING = "def lookup(key: str) -> str:\n    return key\n"
UNDESCRIBED_ARGUMENT = 'def lookup(key: str) -> str:\n    """Look a key up."""\n    return key\n'
# Renders every message as role and content: the calls and the tool's name are lost.
PLAIN_TEMPLATE = (
    "{%- for m in messages -%}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def recipe(tmp_path, stage_type: str, tools: dict, model=None, **extra) -> dict:
    data = tmp_path / "conversations.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    stage = {"type": stage_type, "tools": tools}
    if stage_type == "eval":
        stage["models"] = ["model"]
    return {
        "output_dir": str(tmp_path / "run"),
        "model": model or {"tiny": TINY_SIZES},
        "data": {"train": {"path": str(data)}, "test": {"path": str(data)}},
        "stages": {"tools_stage": stage},
        **extra,
    }


def refusal(raw) -> str:
    with pytest.raises(ConfigError) as info:
        build_recipe(raw)
    return str(info.value)


@pytest.fixture(scope="module")
def plain_template_dir(tool_model_dir, tmp_path_factory):
    """The tool model's tokenizer with a chat template that cannot render tool calls."""
    directory = tmp_path_factory.mktemp("plain_template")
    tokenizer = AutoTokenizer.from_pretrained(tool_model_dir)
    tokenizer.chat_template = PLAIN_TEMPLATE
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("stage_type", ["sft", "eval"])
@pytest.mark.parametrize(
    "tools, message",
    [
        ({"functions": ["no_such_module_x1:f"]}, "stages.tools_stage.tools.functions: "),
        ({"functions": ["calculater"]}, "did you mean 'calculator'"),
        ({"functions": ["FILE:lookup"]}, "'lookup' cannot be shown to the model"),
        ({"functions": ["UNDESCRIBED:lookup"]}, "a Google-style docstring"),
        ({"functions": ["calculator", "calculator"]}, "two tools share a name"),
        ({"environment_factory": 3}, "tools.environment_factory: expected str or dict, got 3"),
        ({"environment_factory": "no_such_module_x1:Env"}, "stages.tools_stage.tools.environment_factory"),
        ({"functions": ["calculator"], "timeout": 0}, "tools.timeout: 0.0; seconds, > 0"),
    ],
)
def test_tools_that_cannot_work_are_refused_at_validate(tmp_path, stage_type, tools, message):
    (tmp_path / "no_docstring.py").write_text(NO_DOCSTRING)
    (tmp_path / "undescribed.py").write_text(UNDESCRIBED_ARGUMENT)
    functions = [
        f.replace("FILE", str(tmp_path / "no_docstring.py")).replace(
            "UNDESCRIBED", str(tmp_path / "undescribed.py")
        )
        for f in tools.get("functions", [])
    ]
    assert message in refusal(recipe(tmp_path, stage_type, {**tools, "functions": functions}))


@pytest.mark.parametrize("stage_type", ["sft", "eval"])
def test_a_chat_template_that_cannot_render_tool_calls_is_refused(tmp_path, stage_type, plain_template_dir):
    raw = recipe(tmp_path, stage_type, {"functions": ["calculator"]}, model={"path": str(plain_template_dir)})
    message = refusal(raw)
    assert (
        f"stages.tools_stage.tools: {plain_template_dir}: the chat template leaves out the tool call's name"
        in message
    )
    assert "use a template that renders assistant tool_calls and tool messages" in message


def test_the_tool_model_and_tiny_templates_render_tool_calls(tool_model_dir, plain_template_dir):
    assert template_problems(load_tokenizer(str(tool_model_dir))) == []
    assert load_tokenizer(str(tool_model_dir)).chat_template == TINY_CHAT_TEMPLATE
    problems = template_problems(load_tokenizer(str(plain_template_dir)))
    assert problems and "the tool call's name, its arguments of a tool conversation" in problems[0]


def test_sft_with_tools_needs_conversations_rendered_as_they_are(tmp_path):
    raw = recipe(tmp_path, "sft", {"functions": ["calculator"]})
    raw["data"] = {"task": "arithmetic"}
    assert "distillation with tools trains on conversations; set data.train" in refusal(raw)
    raw = recipe(tmp_path, "sft", {"functions": ["calculator"]})
    raw["model"]["think_prefill"] = True
    raw["model"] = {"tiny": TINY_SIZES, "think_prefill": True}
    assert "model.think_prefill cannot open <think> for them" in refusal(raw)


def test_reasonkit_eval_checks_the_models_template(tmp_path, plain_template_dir, capsys):
    benchmark = tmp_path / "b.jsonl"
    benchmark.write_text(json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    args = ["eval", str(plain_template_dir), "--benchmark", str(benchmark), "--tool", "calculator"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    assert "the chat template leaves out the tool call's name" in capsys.readouterr().err


def test_a_recipe_with_tools_that_work_validates(tmp_path, tool_model_dir):
    for stage_type in ("sft", "eval"):
        raw = recipe(
            tmp_path, stage_type, {"functions": ["calculator", "python"]}, model={"path": str(tool_model_dir)}
        )
        assert build_recipe(raw).stages["tools_stage"].tools.functions == ["calculator", "python"]
