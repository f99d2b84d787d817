"""The ``reasonkit`` command line: one subcommand per task, each with its own ``--help``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reasonkit import hub, logs
from reasonkit.recipe import load_recipe
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reasonkit",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for name, help_text in [
        ("run", "run a recipe's stages in order"),
        ("validate", "check a recipe without running it"),
    ]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("recipe", help="path to the recipe YAML")
        sub.add_argument(
            "overrides", nargs="*", help="key.path=value overrides, e.g. stages.sft.learning_rate=1e-5"
        )
    run = commands.choices["run"]
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip finished stages and continue the unfinished one from its latest checkpoint",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in the output directory"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config, the data on its first rows and the rewards, print the objective; train nothing",
    )
    from reasonkit import eval_command, generate_command, rewards_command

    commands.add_parser(
        "vllm-serve",
        help="start a vLLM server a GRPO run samples from and pushes weights into (engine: vllm_server)",
        description="reasonkit vllm-serve MODEL [vllm serve options]; reasonkit vllm-serve --help says more",
    )
    rewards_command.add_commands(commands)
    eval_command.add_command(commands)
    generate_command.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vllm-serve"]:  # every other argument is vLLM's: its own parser reads them
        from reasonkit import serve_command

        return serve_command.main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting overrides at an option (`run R --overwrite a=1`): take the rest too.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    hub.keep_offline()  # until something names a hub id: a local run makes no hub call
    uses_libraries = args.command in ("run", "eval", "generate")
    loads_models = uses_libraries and not getattr(args, "dry_run", False)
    logs.setup(log_file_follows=loads_models)
    told = False
    try:
        if uses_libraries:
            logs.quiet_libraries(deepspeed=loads_models)  # accelerate imports it with the models
        if args.command in ("eval", "generate"):
            logs.write_library_log(_command_log(args))
        code = _command(args)
    except ReasonkitError as exc:  # what the user can fix: the message says how, no traceback
        print(f"reasonkit: error: {exc}", file=sys.stderr)
        told, code = True, 2
    finally:
        # Library warnings held for a run log that never opened (the run stopped before its folder
        # was ready): shown, unless our own message already says what went wrong.
        logs.close(show_held=not told)
    return end_process(code)  # under a multi-process launch: every process ends cleanly, here


def _command_log(args) -> Path:
    """Where eval and generate write the libraries' log records: beside their results."""
    if args.command == "eval":
        path = Path(args.output) / "eval.log"
    else:
        path = Path(args.output).with_suffix(".log")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _command(args) -> int:
    if args.command == "rewards":
        from reasonkit import rewards_command

        return rewards_command.run(args)
    if args.command in ("eval", "generate"):
        from reasonkit import eval_command, generate_command

        return (eval_command if args.command == "eval" else generate_command).run(args)
    recipe = load_recipe(args.recipe, args.overrides)
    if args.command == "validate":
        print(f"{args.recipe}: ok ({', '.join(f'{n} ({s.type})' for n, s in recipe.stages.items())})")
        return 0
    if args.dry_run:
        from reasonkit.dry_run import dry_run

        return dry_run(recipe)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from reasonkit.pipeline import run_recipe

    run_recipe(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
