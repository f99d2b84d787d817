"""The ``reasonkit`` command line: one subcommand per module, each with its own ``--help``.

Each subcommand's module has ``add_command(commands)``, which adds its parser and sets on it, with
``set_defaults``, what ``main`` needs to run it:

- ``handler``: the function that runs it, ``handler(args) -> exit code``; heavy imports stay inside it,
  so that ``reasonkit --help`` and ``reasonkit validate`` import no torch;
- ``uses_libraries``: it loads transformers / accelerate (their logging is quieted);
- ``library_log``: ``library_log(args) -> path`` of the file the libraries' log records go to, for the
  commands that have no run folder of their own.

``vllm-serve`` is the exception: every argument after it is vLLM's, read by vLLM's own parser.
"""

from __future__ import annotations

import argparse
import sys

from reasonkit import hub, logs
from reasonkit.cli import eval as eval_command
from reasonkit.cli import generate, rewards, run, validate, vllm_serve
from reasonkit.errors import ReasonkitError
from reasonkit.launch import end_process

DESCRIPTION = """Post-train language models to reason: distillation on thinking traces, GRPO with
verifiable rewards, evaluation. Training commands also run under accelerate:
accelerate launch -m reasonkit run RECIPE"""
EXAMPLES = """examples:
  reasonkit run recipes/demo/arithmetic.yaml
  reasonkit run RECIPE --dry-run
  accelerate launch --config_file recipes/accelerate/zero2.yaml -m reasonkit run RECIPE
  reasonkit rewards check trl.rewards:accuracy_reward --data rows.jsonl
  reasonkit eval runs/demo/grpo/model --benchmark test.jsonl --verifier math
  reasonkit vllm-serve runs/demo/sft/model --port 8000 --tensor-parallel-size 2

Each command has its own help: reasonkit COMMAND --help"""

# In the order `reasonkit --help` lists them.
COMMANDS = [run, validate, vllm_serve, rewards, eval_command, generate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reasonkit",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(uses_libraries=False, library_log=None)
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vllm-serve"]:  # every other argument is vLLM's: its own parser reads them
        return vllm_serve.main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting overrides at an option (`run R --overwrite a=1`): take the rest too.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    hub.keep_offline()  # until something names a hub id: a local run makes no hub call
    loads_models = args.uses_libraries and not getattr(args, "dry_run", False)
    logs.setup(log_file_follows=loads_models)
    told = False
    try:
        if args.uses_libraries:
            logs.quiet_libraries(deepspeed=loads_models)  # accelerate imports it with the models
        if args.library_log is not None:
            logs.write_library_log(args.library_log(args))
        code = args.handler(args)
    except ReasonkitError as exc:  # what the user can fix: the message says how, no traceback
        print(f"reasonkit: error: {exc}", file=sys.stderr)
        told, code = True, 2
    finally:
        # Library warnings held for a run log that never opened (the run stopped before its folder
        # was ready): shown, unless our own message already says what went wrong.
        logs.close(show_held=not told)
    return end_process(code)  # under a multi-process launch: every process ends cleanly, here
