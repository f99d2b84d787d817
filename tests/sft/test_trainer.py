import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonkit.cli import main
from reasonkit.manifest import read_manifest
from reasonkit.recipe import build_recipe
from reasonkit.sft.trainer import SFTRun
from reasonkit.stage import StageContext
from tests.conftest import TINY_SIZES


def sft_recipe(output_dir, **stage):
    return {
        "output_dir": str(output_dir),
        "model": {"tiny": TINY_SIZES},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 64}},
        "stages": {
            "sft": {
                "learning_rate": 3e-3,
                "batch_size": 8,
                "max_steps": 24,
                "logging_steps": 4,
                "max_length": 64,
                **stage,
            },
            "eval": {"max_new_tokens": 40, "batch_size": 20, "engine": "transformers"},
            "eval_sampled": {
                "type": "eval",
                "models": ["sft"],
                "num_samples": 3,
                "k": [1, 3],
                "temperature": 1.0,
                "max_new_tokens": 40,
                "seed": 0,
                "engine": "transformers",
            },
        },
    }


def test_training_batch_masks_prompt_and_padding_and_trains_answer_and_eos(tmp_path, tiny_model_dir):
    recipe = build_recipe(sft_recipe(tmp_path, max_length=48, batch_size=4))
    run = SFTRun(
        StageContext(recipe, "sft", tmp_path / "sft", init_path=str(tiny_model_dir)), recipe.stages["sft"]
    )
    run.setup()
    tok = run.tokenizer
    assert run.metrics["dropped_too_long"] > 0  # most traces do not fit in 48 tokens...
    assert all(len(ids) <= 48 for ids in run.dataset["input_ids"])  # ...and are dropped, not cut
    batch = next(iter(run.trainer.get_train_dataloader()))
    for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        assert (labels[mask == 0] == -100).all()  # padding
        trained = labels[labels != -100]
        text = tok.decode(trained.tolist())
        assert text.startswith("<think>") and text.endswith("<|end|>") and "</think>" in text
        assert trained[-1] == tok.eos_token_id
        prompt = tok.decode(input_ids[(labels == -100) & (mask == 1)].tolist())
        assert prompt.startswith("<|user|>What is") and prompt.endswith(
            "<|assistant|>"
        )  # the prompt is never trained


def test_cli_smoke_run_trains_saves_and_reloads(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(sft_recipe(tmp_path / "run"), sort_keys=False))
    assert main(["run", str(path)]) == 0
    out = tmp_path / "run"

    records = [json.loads(line) for line in (out / "sft" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 4 and losses[-1] < 0.7 * losses[0]

    base = AutoModelForCausalLM.from_pretrained(out / "base_model")
    trained = AutoModelForCausalLM.from_pretrained(out / "sft" / "model")  # the checkpoint reloads
    base_params = dict(base.named_parameters())
    unchanged = [n for n, p in trained.named_parameters() if torch.equal(p, base_params[n])]
    assert not unchanged, f"parameters that did not train: {unchanged}"

    tokenizer = AutoTokenizer.from_pretrained(out / "sft" / "model")
    assert (
        tokenizer.decode(tokenizer("<think>1</think>")["input_ids"], skip_special_tokens=True)
        == "<think>1</think>"
    )
    assert read_manifest(out / "sft" / "model")["format"] == {"traces": True, "think_prefilled": False}
    assert (
        yaml.safe_load((out / "sft" / "model" / "recipe.yaml").read_text())["stages"]["sft"]["max_steps"]
        == 24
    )

    summary = json.loads((out / "summary.json").read_text())
    result = summary["stages"]["eval"]["models"]["sft"]["test"]
    assert result["n"] == 20 and summary["wall_seconds"] > 0
    assert (out / "sft" / "curves.png").stat().st_size > 0
    assert any((out / "sft" / "tensorboard").iterdir())
    samples = [
        json.loads(line) for line in (out / "eval" / "sft.test.samples.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 20  # the summary's accuracy is the share of samples judged right
    assert result["accuracy"] == pytest.approx(sum(s["correct"][0] for s in samples) / 20)
    sampled = summary["stages"]["eval_sampled"]["models"]["sft"]["test"]
    assert sampled["num_samples"] == 3 and sampled["n"] == 20
    for metric in ("pass@1", "pass@3", "maj@1", "maj@3"):
        estimate = sampled[metric]
        assert estimate["low"] <= estimate["value"] <= estimate["high"], metric
    assert sampled["pass@3"]["value"] >= sampled["pass@1"]["value"]
    first = json.loads((out / "eval_sampled" / "sft.test.samples.jsonl").read_text().splitlines()[0])
    assert len(first["completions"]) == 3 and len(first["correct"]) == 3
    decoding = json.loads((out / "eval_sampled" / "sft.test.results.json").read_text())["decoding"]
    assert decoding["temperature"] == 1.0 and decoding["num_samples"] == 3
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"path": "MISSING.jsonl"}}, "could not load dataset"),
        ({"train": {"path": "BAD_COLUMNS.jsonl"}}, "has no column(s) ['prompt', 'answer', 'trace']"),
    ],
)
def test_bad_data_fails_with_a_message_before_training(tmp_path, capsys, data, message):
    (tmp_path / "BAD_COLUMNS.jsonl").write_text('{"question": "q", "solution": "s"}\n')
    data["train"]["path"] = str(tmp_path / data["train"]["path"])
    raw = {**sft_recipe(tmp_path / "run"), "data": data}
    raw["stages"] = {"sft": raw["stages"]["sft"]}
    raw["model"] = {"tiny": TINY_SIZES}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_second_run_never_mixes_with_the_first(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    raw = sft_recipe(tmp_path / "run", max_steps=2, logging_steps=1)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    metrics = tmp_path / "run" / "sft" / "metrics.jsonl"
    assert main(["run", str(path)]) == 0
    first_run = metrics.read_text()
    assert main(["run", str(path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", str(path), "--overwrite"]) == 0
    assert len(metrics.read_text().splitlines()) == len(first_run.splitlines())  # one run's records, not two
    assert main(["run", str(path), "--resume"]) == 0  # every stage done: skipped
    assert "done earlier, skipped" in capsys.readouterr().out


def trained_weights(tmp_path, model_dir, dtype: str, **stage) -> tuple[SFTRun, dict]:
    from reasonkit.launch import process_state

    process_state()  # as the pipeline does before any stage
    raw = sft_recipe(tmp_path, **stage)
    recipe = build_recipe({**raw, "model": {"path": str(model_dir), "dtype": dtype}})
    run = SFTRun(
        StageContext(recipe, "sft", tmp_path / "sft", init_path=str(model_dir)), recipe.stages["sft"]
    )
    run.setup()
    run.train()
    return run, {n: p.detach().float().clone() for n, p in run.trainer.model.named_parameters()}


def test_bfloat16_training_keeps_float32_master_weights_and_moves_them_as_float32_does(
    tmp_path, tiny_model_dir
):
    """At lr 1e-6 AdamW steps are far below half a bf16 ulp of most weights: bf16 weights updated in
    place would barely move. Trained in bf16 (autocast) on float32 weights, they move as in float32."""
    settings = {"learning_rate": 1e-6, "lr_scheduler": "constant", "max_steps": 3}
    initial = {
        n: p.float() for n, p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters()
    }
    _, full = trained_weights(tmp_path / "float32", tiny_model_dir, "float32", **settings)
    run, mixed = trained_weights(tmp_path / "bfloat16", tiny_model_dir, "bfloat16", **settings)
    assert run.trainer.args.bf16 and all(p.dtype == torch.float32 for p in run.trainer.model.parameters())
    full_step = torch.cat([(full[n] - initial[n]).flatten() for n in initial])
    mixed_step = torch.cat([(mixed[n] - initial[n]).flatten() for n in initial])
    assert (mixed_step != 0).float().mean() > 0.9 * (full_step != 0).float().mean() > 0.8
    assert torch.nn.functional.cosine_similarity(full_step, mixed_step, dim=0) > 0.9


def test_constant_schedule_warms_up(tmp_path, tiny_model_dir):
    settings = {"lr_scheduler": "constant", "warmup_steps": 4, "max_steps": 6, "logging_steps": 1}
    trained_weights(tmp_path, tiny_model_dir, "float32", **settings)
    records = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["learning_rate"] for r in records if "learning_rate" in r]
    assert rates[0] < rates[1] < rates[2] < rates[-1] == pytest.approx(3e-3)
