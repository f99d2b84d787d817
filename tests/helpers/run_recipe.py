"""`reasonkit run` under a launcher (or alone), for the tests of multi-process and killed runs.

    accelerate launch --config_file CONFIG --num_processes 2 tests/helpers/run_recipe.py \
        [--stall-at-checkpoint STAGE STEP MARKER] ARGS...

ARGS are `reasonkit run`'s. With --stall-at-checkpoint, the checkpoint of STAGE at STEP is written whole
(every process's part and the manifest, in `checkpoints/partial/`) and then, just before it would become
visible, process 0 writes the file MARKER and waits forever: the test kills the launch there (SIGKILL),
as a machine or a scheduler would kill a run mid-save.
"""

import sys
import time
from pathlib import Path

from grpo_update import skip_deepspeed_shm_build


def stall_at_checkpoint(stage: str, step: int, marker: str) -> None:
    """Hold the rename that publishes STAGE's checkpoint STEP (checkpoints.publish_checkpoint's last act)."""
    real_rename = Path.rename
    target = f"step-{step:06d}"

    def rename(self, destination):
        destination = Path(destination)
        if destination.name == target and destination.parent.parent.name == stage:
            Path(marker).write_text(str(self))
            while True:
                time.sleep(60)
        return real_rename(self, destination)

    Path.rename = rename


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--stall-at-checkpoint":
        stall_at_checkpoint(args[1], int(args[2]), args[3])
        args = args[4:]
    skip_deepspeed_shm_build()
    from reasonkit.cli import main

    sys.exit(main(["run", *args]))
