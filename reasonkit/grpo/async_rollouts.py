"""Where a GRPO step's completions come from: generated for it, or generated ahead while training runs.

``async_rollouts: 0`` — each step draws its prompts, generates, then trains (on-policy).
``async_rollouts: k > 0`` — the next k steps' batches are already being generated, in a background
thread, while this one trains: generation (most of a step on real models) overlaps training. With k = 1
(one-step-off-policy) the batch a step trains on was sampled by the weights of one update earlier (the
server's requests running when a push comes finish on the old weights; those still queued wait for the
new ones, so part of a batch may be fresher: the lag is at most k, measured per completion). Only an
engine that generates apart from the trainer (``generates_apart``: vllm_server) may do this; it pauses
its servers while weights change, and tags each completion with the weight version that sampled it.

Staleness is measured and corrected:
- ``weight_version_lag/mean`` and ``/max``: updates between the weights that sampled a completion (the
  oldest, if an update landed mid-completion) and the policy that trains on it (0 when synchronous);
- the correction is the trainer's existing importance weight, min(π_trainer / π_sampler, importance_cap)
  per token: π_sampler is the stale policy's (as the server computed it), so the same weight that covers
  the sampler/trainer kernel gap covers the lag; ``importance_weight/capped`` is the share of tokens whose
  weight the cap cut (how far off-policy the batch was).

Checkpoints: the prompt sampler runs k batches ahead of training; a checkpoint stores its position as of
the first batch not yet trained (``rewound``), so a resumed run trains on the same prompts in the same
order (regenerating those k batches with the checkpoint's weights).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from reasonkit.rollout import Rollout, RolloutEngine, SamplingSettings


@dataclass
class Generated:
    """One step's prompts (this process's share) and their completions, G per prompt, prompt by prompt."""

    rows: list[dict]
    rollouts: list[Rollout]
    weight_version_lags: list[
        int
    ]  # per completion whose engine reports versions: updates since it was sampled
    wait_seconds: float  # how long the trainer waited for them


def stage_sampling(stage) -> SamplingSettings:
    """What a GRPO stage samples with (``GRPOStage``'s sampling fields)."""
    return SamplingSettings(
        n=stage.num_generations,
        temperature=stage.temperature,
        top_p=stage.top_p,
        top_k=stage.top_k,
        max_new_tokens=stage.max_new_tokens,
    )


def version_lag_metrics(lags: list[int]) -> dict[str, float]:
    """Mean and max weight-version lag over a batch (none when the engine reports no versions).

    >>> version_lag_metrics([1, 1, 0, 2])
    {'weight_version_lag/mean': 1.0, 'weight_version_lag/max': 2.0}
    >>> version_lag_metrics([])
    {}
    """
    if not lags:
        return {}
    return {"weight_version_lag/mean": sum(lags) / len(lags), "weight_version_lag/max": float(max(lags))}


class RolloutSource:
    """Batches of completions in step order, ``ahead`` of them in flight (0: generated when asked for).

    ``draw()`` takes the next step's rows from the prompt sampler (called in step order, on the trainer's
    thread); ``render(row["prompt"])`` is the prompt's text as the model reads it. Generation runs on one
    background thread, so batches come back in the order they were drawn.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        sampler,
        draw: Callable[[], list[dict]],
        render: Callable[[object], str],
        sampling: SamplingSettings,
        ahead: int = 0,
    ):
        self.engine, self.sampler, self.draw, self.render = engine, sampler, draw, render
        self.sampling, self.ahead = sampling, ahead
        self.pending: deque[tuple[dict, list[dict], Future]] = (
            deque()
        )  # (sampler state before the draw, rows, rollouts)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollouts") if ahead else None

    def next(self, steps_left: int) -> Generated:
        """This step's batch; first, batches for up to ``ahead`` later steps (of ``steps_left``) are set going."""
        while len(self.pending) < min(self.ahead + 1, steps_left):
            state = self.sampler.state_dict()
            rows = self.draw()
            self.pending.append((state, rows, self._submit(rows)))
        started = time.time()
        _, rows, future = self.pending.popleft()
        rollouts = future.result()
        policy_version = getattr(self.engine, "weight_version", None)
        lags = [
            policy_version - r.weight_version
            for r in rollouts
            if r.weight_version is not None and policy_version is not None
        ]
        return Generated(rows, rollouts, lags, time.time() - started)

    def _submit(self, rows: list[dict]) -> Future:
        prompts = [self.render(row["prompt"]) for row in rows]
        # An engine sampling the policy itself has the trainer's log-probs, not worth their [N, T, vocab] of
        # memory; another engine's are weighed against the trainer's.
        with_logprobs = not self.engine.logprobs_are_trainers
        if self.pool is None:
            future: Future = Future()
            future.set_result(self.engine.generate(prompts, self.sampling, with_logprobs=with_logprobs))
            return future
        return self.pool.submit(self.engine.generate, prompts, self.sampling, with_logprobs=with_logprobs)

    @contextlib.contextmanager
    def rewound(self):
        """The prompt sampler as of the first batch not trained yet (what a checkpoint must store)."""
        if not self.pending:
            yield
            return
        current = self.sampler.state_dict()
        self.sampler.load_state_dict(self.pending[0][0])
        try:
            yield
        finally:
            self.sampler.load_state_dict(current)

    def close(self) -> None:
        if self.pool is not None:
            for _, _, future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)  # a generation in flight ends with its request
