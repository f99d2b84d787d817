"""`reasonkit run` under a launcher, for the multi-process tests.

    accelerate launch --config_file CONFIG --num_processes 2 tests/distributed/run_recipe.py [--die-at-step N] ARGS...

ARGS are `reasonkit run`'s. With --die-at-step N, every process dies when GRPO reaches step N, as a
run killed mid-way would (after the checkpoints written before it).
"""

import sys

from grpo_update import skip_deepspeed_shm_build


def die_at_step(step: int) -> None:
    from reasonkit.grpo import trainer

    real_step = trainer.GRPORun._step

    def step_or_die(self):
        if self.progress.step + 1 == step:
            raise SystemExit(f"killed at step {step}")
        return real_step(self)

    trainer.GRPORun._step = step_or_die


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--die-at-step":
        die_at_step(int(args[1]))
        args = args[2:]
    skip_deepspeed_shm_build()
    from reasonkit.cli import main

    sys.exit(main(["run", *args]))
