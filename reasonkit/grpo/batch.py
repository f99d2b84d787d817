"""What a GRPO step draws and trains on: the prompt order and step counter (both checkpointed), and
one process's batch of completions with everything computed for it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from reasonkit.algorithms import truncated_importance_weights
from reasonkit.grpo.scoring import Scores


class PromptSampler:
    """Walks the prompt rows in a seeded random order, epoch after epoch. Its position is checkpointed."""

    def __init__(self, num_rows: int, seed: int):
        self.num_rows, self.seed = num_rows, seed
        self.epoch, self.index = 0, 0

    def next(self, count: int) -> list[int]:
        picked = []
        while len(picked) < count:
            order = torch.randperm(
                self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
            take = order[self.index : self.index + count - len(picked)].tolist()
            picked += take
            self.index += len(take)
            if self.index >= self.num_rows:
                self.epoch, self.index = self.epoch + 1, 0
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = state["epoch"], state["index"]


class Progress:
    """The step counter, checkpointed with the rest of the state."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


@dataclass
class Scored:
    """A step's completions as the rewards saw them, and what they scored (the whole batch, [B*G])."""

    prompts: list  # this process's: each completion's prompt, as the data holds it
    completions: list[str]  # this process's, with a prefilled <think> put back in front
    columns: dict[str, list]  # what the rewards were given besides prompts and completions
    scores: Scores  # gathered over processes
    logged: dict[str, float]  # what rewards logged with log_metric


@dataclass
class Selection:
    """Over the whole batch, [B*G] each: what trains and what runs."""

    advantages: torch.Tensor
    lengths: torch.Tensor  # completion tokens
    truncated: torch.Tensor  # cut at max_new_tokens
    excluded: torch.Tensor  # a reward failed on it (on_reward_failure: exclude)
    trains: torch.Tensor  # in the loss and its normalisers
    runs: torch.Tensor  # its forward passes run: trains, less those without gradient when skipped


@dataclass
class Batch:
    """This process's completions that carry gradient this step (N of them)."""

    sequences: list[tuple[list[int], list[int]]]  # (prompt_ids, completion_ids)
    advantages: torch.Tensor  # [N]
    micro_batches: list[list[int]]  # indices into sequences, each at most the token budget
    # Over every process: the loss normalisers (completions that train, and their tokens, skipped ones
    # included), the tokens of the sequences that run (the metrics' denominator), and the micro-batch
    # count each process runs (under ZeRO-3 every forward is collective; a process with fewer runs
    # `filler` passes without gradient).
    total_sequences: int
    total_tokens: int
    run_tokens: int
    num_passes: int
    filler: tuple[list[int], list[int]]
    old_logprobs: list[torch.Tensor] | None = None  # per sequence [C_i]; None: on-policy (μ = 1)
    # Per sequence [C_i], only when the sampler is not the trainer (vLLM): the sampler's log-probs,
    # the trainer's log-probs of the same (truncated) distribution, and min(π_trainer / π_sampler, cap).
    rollout_logprobs: list[torch.Tensor] | None = None
    trainer_logprobs: list[torch.Tensor] | None = None
    importance_weights: list[torch.Tensor] | None = None
    ref_logprobs: list[torch.Tensor] | None = None  # per sequence [C_i]; None: β = 0
    # Per sequence [C_i], with tools: 1 on the model's tokens, 0 on the tool results' (attended, but out
    # of the loss, the KL, the metrics and the normalisers); None: every completion token is the model's.
    completion_masks: list[torch.Tensor] | None = None

    @staticmethod
    def models_tokens(values: list[torch.Tensor], masks: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """Each sequence's ``values`` at the model's own tokens."""
        if masks is None:
            return values
        return [v[m.bool()] for v, m in zip(values, masks)]

    def weigh_against_sampler(self, ids, trainer_view, response_mask, cap: float, level: str) -> None:
        """Store, for the sequences ``ids``, the trainer's log-probs of the sampler's distribution
        (``trainer_view``) and the truncated importance weights min(π_trainer / π_sampler, cap)."""
        trainer = pad_sequence(trainer_view, batch_first=True)  # [n, T]
        sampler = pad_sequence([self.rollout_logprobs[i] for i in ids], batch_first=True).to(trainer.device)
        weights = truncated_importance_weights(trainer, sampler, response_mask.to(trainer.device), cap, level)
        for row, i in enumerate(ids):
            length = len(self.rollout_logprobs[i])
            self.importance_weights[i] = weights[row, :length].cpu()
            self.trainer_logprobs[i] = trainer[row, :length].cpu()

    def passes(self):
        """(indices, sequences) of each micro-batch, then fillers ((), [filler]) up to num_passes."""
        for k in range(self.num_passes):
            if k < len(self.micro_batches):
                ids = self.micro_batches[k]
                yield ids, [self.sequences[i] for i in ids]
            else:
                yield (), [self.filler]
