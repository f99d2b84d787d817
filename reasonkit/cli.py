"""``reasonkit <command>``. Training commands also run under ``accelerate launch -m reasonkit ...``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from reasonkit.config import ConfigError, load_recipe

USAGE_ERRORS = (ConfigError,)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasonkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("run", "run a recipe's stages in order"),
        ("validate", "check a recipe without running it"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("recipe", help="path to the recipe YAML")
        sub.add_argument(
            "overrides", nargs="*", help="key.path=value overrides, e.g. stages.sft.learning_rate=1e-5"
        )
        if name == "run":
            sub.add_argument(
                "--resume",
                action="store_true",
                help="skip finished stages and continue the unfinished one from its latest checkpoint",
            )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        if args.command == "validate":
            print(f"{args.recipe}: ok ({', '.join(f'{n} ({s.type})' for n, s in recipe.stages.items())})")
            return 0
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from reasonkit.data.chat import FormatError
        from reasonkit.data.traces import DataError
        from reasonkit.grpo.scoring import RewardError
        from reasonkit.grpo.trainer import TrainingError
        from reasonkit.models import ModelLoadError
        from reasonkit.pipeline import run_recipe

        try:
            run_recipe(recipe, resume=args.resume)
        except (DataError, FormatError, ModelLoadError, RewardError, TrainingError) as exc:
            raise ConfigError(str(exc)) from None
    except ConfigError as exc:
        print(f"reasonkit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
