"""Distillation with tools: conversations with tool turns, trained on the assistant's turns only."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from reasonkit.cli import main
from reasonkit.data import DataError
from reasonkit.manifest import read_manifest
from reasonkit.models import build_tiny_model, load_tokenizer
from reasonkit.recipe import build_recipe
from reasonkit.sft.trainer import SFTRun
from reasonkit.stage import StageContext
from tests.helpers.tool_model import CONVERSATIONS


def tool_recipe(tmp_path, model_dir, **stage) -> dict:
    data = tmp_path / "conversations.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CONVERSATIONS.values()))
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(
            json.dumps({"prompt": p, "answer": m[-1]["content"].split("</think>")[1]}) + "\n"
            for p, m in CONVERSATIONS.items()
        )
    )
    sft = {"learning_rate": 3e-3, "batch_size": 3, "max_steps": 30, "logging_steps": 5, "max_length": 128}
    return {
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(model_dir)},
        "data": {"train": {"path": str(data)}, "test": {"path": str(test)}},
        "stages": {
            "sft": {**sft, "tools": {"functions": ["calculator"]}, **stage},
            "eval": {"tools": {"functions": ["calculator"]}, "max_new_tokens": 80, "engine": "transformers"},
        },
    }


def assistant_turns(messages: list[dict]) -> str:
    """What the tiny template writes for the assistant's turns, each ended by its EOS."""
    turns = []
    for m in messages[1:]:
        if m["role"] == "assistant":
            calls = "".join(
                f"<tool_call>{json.dumps(c['function'])}</tool_call>" for c in m.get("tool_calls", [])
            )
            turns.append(m["content"] + calls + "<|end|>")
    return "".join(turns)


def test_tool_conversations_train_the_assistant_turns_and_mask_prompt_and_tool_results(
    tmp_path, tool_model_dir
):
    recipe = build_recipe(tool_recipe(tmp_path, tool_model_dir))
    run = SFTRun(
        StageContext(recipe, "sft", tmp_path / "sft", init_path=str(tool_model_dir)), recipe.stages["sft"]
    )
    run.setup()
    tok = run.tokenizer
    batch = next(iter(run.trainer.get_train_dataloader()))
    trained_texts, masked_texts = set(), []
    for input_ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        trained_texts.add(tok.decode(labels[labels != -100].tolist()))
        masked_texts.append(tok.decode(input_ids[(labels == -100) & (attention == 1)].tolist()))
    assert trained_texts == {assistant_turns(m) for m in CONVERSATIONS.values()}
    for masked in masked_texts:  # the tools' schemas and the question, then each tool result
        assert masked.startswith("<|system|>tools: calculator(expression)<|end|><|user|>")
    assert any("<tool_response>144</tool_response>" in masked for masked in masked_texts)
    assert not any("tool_response" in text for text in trained_texts)


def test_tool_sft_run_teaches_a_fresh_model_to_call_the_tools_as_its_evaluation_shows(
    tmp_path, tool_model_dir, capsys
):
    """A fresh model on the tool model's tokenizer learns the conversations by heart through the stage; the
    eval stage after it, generating through the tool loop, then writes them back: the ids trained on are
    those the loop generates, the tool results it never trained on read as the loop appends them."""
    fresh = tmp_path / "fresh"
    tokenizer = load_tokenizer(str(tool_model_dir))
    build_tiny_model(
        tokenizer, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128
    ).save_pretrained(fresh)
    tokenizer.save_pretrained(fresh)
    path = tmp_path / "recipe.yaml"
    by_heart = {"learning_rate": 1e-2, "lr_scheduler": "constant", "max_steps": 150, "logging_steps": 10}
    path.write_text(yaml.safe_dump(tool_recipe(tmp_path, fresh, **by_heart), sort_keys=False))
    assert main(["run", str(path)]) == 0
    assert "tool_calls" in capsys.readouterr().out  # the summary table's column
    out = tmp_path / "run" / "sft"
    losses = [
        r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]
    assert len(losses) >= 10 and losses[-1] < 0.05 * losses[0]
    trained = dict(AutoModelForCausalLM.from_pretrained(out / "model").named_parameters())
    base = AutoModelForCausalLM.from_pretrained(fresh)
    assert not [n for n, p in base.named_parameters() if torch.equal(p, trained[n])]
    tools = read_manifest(out / "model")["objective"]["tools"]
    assert tools["functions"] == ["calculator"] and "tool results attended, masked" in tools["trained"]
    # the eval stage after it, on the conversations' prompts: every answer right, with its calls
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    evaluated = summary["stages"]["eval"]["models"]["sft"]["test"]
    assert evaluated["n"] == 3 and evaluated["pass@1"]["value"] == 1.0
    assert (
        evaluated["tools/calls_per_completion"] == 1.0 and evaluated["tools/failed_share"] == 0.0
    )  # (1 + 2 + 0) / 3
    samples = [json.loads(line) for line in (tmp_path / "run" / "eval" / "sft.test.samples.jsonl").open()]
    assert [s["turns"][0][-1]["content"] for s in samples] == [
        m[-1]["content"] for m in CONVERSATIONS.values()
    ]


def test_a_dataset_without_conversations_nor_traces_is_refused_before_training(
    tmp_path, capsys, tool_model_dir
):
    raw = tool_recipe(tmp_path, tool_model_dir)
    raw["stages"] = {"sft": raw["stages"]["sft"]}
    del raw["data"]["test"]
    (tmp_path / "conversations.jsonl").write_text('{"question": "q", "solution": "s"}\n')
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path)]) == 2
    assert "has no conversation column 'messages'; it has ['question', 'solution']" in capsys.readouterr().err
    del raw["stages"]["sft"]["tools"]  # without tools: the (x, t, y) columns, as always
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--overwrite"]) == 2
    assert "has no column(s) ['prompt', 'answer', 'trace']" in capsys.readouterr().err


def test_dry_run_reads_the_conversations_and_names_the_tools(tmp_path, tool_model_dir, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tool_recipe(tmp_path, tool_model_dir), sort_keys=False))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ok: train data: 3 of 3 rows read are conversations to train on" in out
    assert "ok: tools: calculator; at most 5 calls per completion" in out


def test_a_conversation_without_an_answer_is_refused_naming_its_row(tmp_path, tool_model_dir):
    raw = tool_recipe(tmp_path, tool_model_dir)
    unanswered = [
        *CONVERSATIONS["27*31?"][:3],
        {"role": "assistant", "content": "837"},
    ]  # never closes <think>
    rows = [*CONVERSATIONS.values(), unanswered]
    (tmp_path / "conversations.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    recipe = build_recipe(raw)
    run = SFTRun(
        StageContext(recipe, "sft", tmp_path / "sft", init_path=str(tool_model_dir)), recipe.stages["sft"]
    )
    with pytest.raises(DataError, match=r"data.train: row 3: the format contract reads no answer"):
        run.setup()


def test_the_tiny_base_model_of_a_recipe_that_distils_tool_calls_reads_a_call_in_a_few_tokens(tmp_path):
    """The tiny tokenizer learns from the text the recipe trains on: with an sft stage with tools, that
    includes the calls as the template writes them, so a call's JSON is not spelt out character by
    character (which made the tool conversations three times longer than the calls they carry)."""
    from reasonkit.pipeline import build_tiny_base_model

    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "'

    def call_tokens(stage: dict) -> int:
        raw = {
            "output_dir": str(tmp_path / "run"),
            "model": {"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}},
            "data": {"task": "arithmetic", "arithmetic": {"digits": 2, "test_size": 10, "train_size": 300}},
            "stages": {"sft": {"max_steps": 1, **stage}},
        }
        folder = tmp_path / f"base-{len(stage)}"
        build_tiny_base_model(build_recipe(raw), folder)
        return len(load_tokenizer(str(folder))(call, add_special_tokens=False)["input_ids"])

    assert call_tokens({"tools": {"functions": ["calculator"]}}) <= 5
    assert call_tokens({}) > 20  # without tool stages, the tokenizer never saw a call
