"""``reasonkit validate RECIPE [key.path=value ...]``: the recipe checked as a run would check it, nothing run."""

from __future__ import annotations

from reasonkit.cli.run import add_recipe_arguments
from reasonkit.recipe import load_recipe


def add_command(commands) -> None:
    summary = "check a recipe without running it"
    cmd = commands.add_parser("validate", help=summary, description=summary)
    cmd.set_defaults(handler=validate)
    add_recipe_arguments(cmd)


def validate(args) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: ok ({', '.join(f'{n} ({s.type})' for n, s in recipe.stages.items())})")
    return 0
