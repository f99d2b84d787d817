"""Rollout throughput: reasonkit's vLLM engine against raw ``vllm.LLM.generate`` (the limit), same model,
prompts and sampling parameters (n = G, temperature 1, max new tokens, the sampled token's log-prob).

    python benchmarks/rollout_vllm.py --side reasonkit --model DIR [--calls 5] [--out result.json]
    python benchmarks/rollout_vllm.py --side vllm --model DIR

Each side is one process with one engine; the first call is a warm-up. Tokens/s counts generated
tokens over the timed calls, end to end (prompt tokenisation and building the rollouts included).
"""

from __future__ import annotations

import argparse
import os
import time

from common import peak_rss_mib, prompt_rows, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["reasonkit", "vllm"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from pathlib import Path

    from reasonkit.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    rows = prompt_rows(Path(args.model))
    batches = [
        [r["prompt"] for r in rows[i * args.prompts : (i + 1) * args.prompts]] for i in range(args.calls + 1)
    ]
    generate = reasonkit_side(args, tokenizer) if args.side == "reasonkit" else vllm_side(args, tokenizer)
    generate(batches[0])  # warm-up
    tokens, started = 0, time.time()
    for prompts in batches[1:]:
        tokens += generate(prompts)
    seconds = time.time() - started
    write_result(args.out, {"side": args.side, "tokens_per_second": tokens / seconds, "tokens": tokens,
                            "seconds": seconds, "peak_rss_mib": peak_rss_mib()})  # fmt: skip


def reasonkit_side(args, tokenizer):
    from reasonkit.rollout import SamplingSettings
    from reasonkit.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(args.model, tokenizer, dtype="float32", seed=0)
    sampling = SamplingSettings(n=args.generations, temperature=1.0, max_new_tokens=args.max_new_tokens)

    def generate(prompts):
        rollouts = engine.generate(prompts, sampling, with_logprobs=True)
        return sum(len(r.completion_ids) for r in rollouts)

    return generate


def vllm_side(args, tokenizer):
    from vllm import LLM, SamplingParams

    llm = LLM(model=args.model, dtype="float32", seed=0, kv_cache_memory_bytes=1 << 29,
              logprobs_mode="processed_logprobs", generation_config="vllm")  # fmt: skip
    params = SamplingParams(n=args.generations, temperature=1.0, max_tokens=args.max_new_tokens, logprobs=0,
                            stop_token_ids=[tokenizer.eos_token_id])  # fmt: skip

    def generate(prompts):
        ids = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        outputs = llm.generate(ids, params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)

    return generate


if __name__ == "__main__":
    main()
