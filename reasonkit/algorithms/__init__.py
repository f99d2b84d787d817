"""The GRPO objective as pure tensor functions: no I/O, no config objects, no distributed code.

Glossary for shapes: B prompts, G completions per prompt (the group), N = B*G sequences,
T completion tokens (padded to the longest in the batch).
"""

from reasonkit.algorithms.advantages import ADVANTAGE_SCALES, group_advantages
from reasonkit.algorithms.correction import (
    IMPORTANCE_LEVELS,
    mismatch_by_length,
    truncated_importance_weights,
)
from reasonkit.algorithms.losses import (
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    GRPOLossOutputs,
    GRPOLossSettings,
    aggregate_loss,
    clipped_surrogate,
    grpo_loss,
    kl_penalty,
)

__all__ = [
    "ADVANTAGE_SCALES",
    "IMPORTANCE_LEVELS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "GRPOLossOutputs",
    "GRPOLossSettings",
    "aggregate_loss",
    "clipped_surrogate",
    "group_advantages",
    "grpo_loss",
    "kl_penalty",
    "mismatch_by_length",
    "truncated_importance_weights",
]
