"""Peak memory of one micro-batch's forward + backward through reasonkit's log-prob pass at Qwen2.5's
vocabulary (151,936), with the LM head in chunks (now) and in one piece (`--whole`: the full
``[tokens, V]`` logits, as before chunking). One measurement per process (peak RSS is per process).

    python benchmarks/logprob_memory.py --tokens 4096 [--whole] [--out result.json]
    python benchmarks/logprob_memory.py --tokens 16384 --device cuda [--bf16]   # peak GPU memory instead

The model is Qwen2.5-0.5B's width and vocabulary with 2 of its layers: the head is what grows with
the vocabulary; the layers add the same to both. Sequences: rows of 512 tokens (64 prompt + 448
completion), padded layout. A process whose address space would pass `--limit-gib` fails to allocate
instead of pushing the machine into its out-of-memory killer; that is reported as such. On a GPU
(`--device cuda`) the figure is torch's peak allocated GPU memory above the loaded model, and an allocation
the GPU refuses is reported the same way.
"""

from __future__ import annotations

import argparse
import re
import resource
import tempfile
import time
from pathlib import Path

from common import build_model, peak_rss_mib, write_result

ROW, PROMPT = 512, 64


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--whole", action="store_true", help="the head in one piece: [tokens, V] logits")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--limit-gib", type=float, default=18.0)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="under bf16 autocast (float32 weights)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from reasonkit.grpo.logprobs import CHUNK_LOGITS, completion_logprobs
    from reasonkit.models import load_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir or tmp) / f"qwen-{args.layers}"
        model = load_model(str(build_model("qwen0.5b", model_dir, layers=args.layers))).to(args.device)
    gpu = args.device.startswith("cuda")
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    sequences = [
        (torch.randint(0, vocab, (PROMPT,), generator=generator).tolist(),
         torch.randint(0, vocab, (ROW - PROMPT,), generator=generator).tolist())
        for _ in range(args.tokens // ROW)
    ]  # fmt: skip
    completion_tokens = sum(len(c) for _, c in sequences)

    def peak_mib() -> float:  # this process's peak: RSS on a CPU, torch's allocations on a GPU
        return torch.cuda.max_memory_allocated() / 2**20 if gpu else peak_rss_mib()

    before = peak_mib()
    if not gpu:  # an address-space limit would break CUDA's own mappings
        limit = int(args.limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.time()
    result = {"tokens": args.tokens, "completion_tokens": completion_tokens, "vocab": vocab,
              "layers": args.layers, "head": "whole" if args.whole else "chunked", "device": args.device,
              "precision": "bf16 autocast" if args.bf16 else "float32"}  # fmt: skip
    try:
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=args.bf16):
            out = completion_logprobs(
                model,
                sequences,
                with_entropy=True,
                layout="padded",
                chunk_logits=10**15 if args.whole else CHUNK_LOGITS,
            )
        torch.cat(out.logprobs).sum().backward()
        if gpu:
            torch.cuda.synchronize()
        result.update(
            peak_rss_mib=peak_rss_mib(),
            pass_mib=peak_mib() - before,  # above the model, its gradients excluded
            seconds=time.time() - started,
        )
    except (RuntimeError, MemoryError) as exc:  # the address-space limit or the GPU refused an allocation
        asked = re.search(r"allocate (\d+) bytes", str(exc)) or re.search(r"allocate ([\d.]+) GiB", str(exc))
        gib = (float(asked.group(1)) / (2**30 if "bytes" in asked.group(0) else 1)) if asked else None
        size = f" (one tensor of {gib:.1f} GiB asked for)" if gib else ""
        room = "the GPU's memory" if gpu else f"{args.limit_gib:g} GiB of address space"
        result.update(failed=f"does not fit in {room}{size}")
    result["model_mib"] = before
    write_result(args.out, result)


if __name__ == "__main__":
    main()
