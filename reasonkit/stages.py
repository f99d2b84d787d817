"""The stage table: every stage type a recipe can name.

A stage type is a package (``reasonkit/sft``, ``grpo``, ``eval``, ``trm``, ``latent``) whose ``stage.py`` builds a
``StageType`` (reasonkit/stage.py says what each part does), and one line here. Reading a recipe, the
pipeline, ``--dry-run``, the objective manifest, trackers and the run's summary consult this table and
nothing else. A stage module is light: its trainer is imported when the stage runs.
"""

from __future__ import annotations

from reasonkit.eval import stage as eval_stage
from reasonkit.grpo import stage as grpo_stage
from reasonkit.latent import stage as latent_stage
from reasonkit.plugins import Registry
from reasonkit.sft import stage as sft_stage
from reasonkit.stage import StageType
from reasonkit.trm import stage as trm_stage

STAGES: Registry[StageType] = Registry("stage type")
STAGES.register("sft", sft_stage.STAGE)
STAGES.register("grpo", grpo_stage.STAGE)
STAGES.register("eval", eval_stage.STAGE)
STAGES.register("trm", trm_stage.STAGE)
STAGES.register("latent", latent_stage.STAGE)
