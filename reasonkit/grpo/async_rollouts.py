"""Where a GRPO step's completions come from: generated for it, or generated ahead while training runs.

``async_rollouts: 0`` — each step draws its prompts, generates, then trains (on-policy).
``async_rollouts: 1`` — one-step-off-policy: the next step's batch is generated, in a background thread,
while this one trains, so generation (most of a step on real models) overlaps training. Only an engine
that generates apart from the trainer (``generates_apart``: vllm_server) may do this.

Every batch is sampled whole by one version of the weights: before a weight push the trainer waits for
the batches in flight (``settle``), so the batch step t trains on was sampled by the weights of exactly
one update earlier (none for step 1). The push waited for that generation anyway (running requests
finish on the old weights); what it no longer does is let queued requests of the same batch sample the
new ones. That makes a run reproducible, and so resumable exactly:

- an engine holding its own weights has its own random state, which no checkpoint holds, so each batch
  is sampled with a seed of its own (``batch_seed``: the recipe's seed, the batch's number, the process);
  an engine sampling the policy in place draws from the trainer's random state, which checkpoints keep;
- a checkpoint stores the batches already generated and not yet trained (``state_dict``), with the
  prompt sampler as it stands after drawing them: a resumed run trains on the very same completions.

Staleness is measured and corrected:
- ``weight_version_lag/mean`` and ``/max``: updates between the weights that sampled a completion and the
  policy that trains on it, as the server tagged it (0 when synchronous, 1 from step 2 with k = 1);
- the correction is the trainer's existing importance weight, min(π_trainer / π_sampler, importance_cap)
  per token: π_sampler is the stale policy's (as the server computed it), so the same weight that covers
  the sampler/trainer kernel gap covers the lag; ``importance_weight/capped`` is the share of tokens whose
  weight the cap cut (how far off-policy the batch was).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from reasonkit.checkpoints import CheckpointError
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


def batch_seed(seed: int, batch: int, process: int, processes: int) -> int:
    """The sampling seed of one process's ``batch``: a different one for every (batch, process) of a run,
    spaced 2**20 apart, since an engine derives each completion's seed by adding its index in the batch.

    >>> batch_seed(0, batch=0, process=0, processes=2), batch_seed(0, batch=0, process=1, processes=2)
    (0, 1048576)
    >>> batch_seed(0, batch=1, process=0, processes=2) == 2 * 2**20
    True
    """
    # Below 2**63 (torch generators take 64-bit seeds); distinct for a given seed while
    # batch * processes + process < 2**43.
    return (seed * 2**32 + batch * processes + process) % 2**43 * 2**20


class RolloutSource:
    """Batches of completions in step order, ``ahead`` of them in flight (0: generated when asked for).

    ``draw()`` takes the next step's rows from the prompt sampler (called in step order, on the trainer's
    thread); ``generation`` turns rows into completions on the engine (with tools or without,
    reasonkit/tools/generation.py). Generation runs on one
    background thread, so batches come back in the order they were drawn. ``seed``: sample each batch
    with ``batch_seed(seed, ...)`` (an engine with a random state of its own); None: the engine's own.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        draw: Callable[[], list[dict]],
        generation,
        sampling: SamplingSettings,
        ahead: int = 0,
        seed: int | None = None,
        process: int = 0,
        processes: int = 1,
    ):
        self.engine, self.draw, self.generation = engine, draw, generation
        self.sampling, self.ahead = sampling, ahead
        self.seed, self.process, self.processes = seed, process, processes
        self.batches = 0  # drawn so far
        self.pending: deque[tuple[list[dict], Future]] = deque()  # (rows, rollouts), oldest first
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollouts") if ahead else None

    def next(self, steps_left: int) -> Generated:
        """This step's batch; first, batches for up to ``ahead`` later steps (of ``steps_left``) are set going."""
        while len(self.pending) < min(self.ahead + 1, steps_left):
            rows = self.draw()
            self.pending.append((rows, self._submit(rows)))
        started = time.time()
        rows, future = self.pending.popleft()
        rollouts = future.result()
        policy_version = getattr(self.engine, "weight_version", None)
        lags = [
            policy_version - r.weight_version
            for r in rollouts
            if r.weight_version is not None and policy_version is not None
        ]
        return Generated(rows, rollouts, lags, time.time() - started)

    def _submit(self, rows: list[dict]) -> Future:
        sampling = self.sampling
        if self.seed is not None:
            sampling = replace(
                sampling, seed=batch_seed(self.seed, self.batches, self.process, self.processes)
            )
        self.batches += 1
        # An engine sampling the policy itself has the trainer's log-probs, not worth their [N, T, vocab] of
        # memory; another engine's are weighed against the trainer's.
        with_logprobs = not self.engine.logprobs_are_trainers
        generate = self.generation.generate
        if self.pool is None:
            return _done(generate(self.engine, rows, sampling, with_logprobs=with_logprobs))
        return self.pool.submit(generate, self.engine, rows, sampling, with_logprobs=with_logprobs)

    def settle(self) -> None:
        """Wait for the batches in flight (before the engine's weights change under them)."""
        for _, future in self.pending:
            future.result()

    def state_dict(self) -> dict:
        """What a checkpoint needs to go on exactly: the batches generated and not trained yet, how many
        were drawn, and the engine's weight version (this process's; the prompt sampler is saved apart)."""
        self.settle()
        return {
            "batches": self.batches,
            "pending": [(rows, future.result()) for rows, future in self.pending],
            "weight_version": getattr(self.engine, "weight_version", None),
            "processes": self.processes,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["pending"] and state["processes"] != self.processes:
            raise CheckpointError(
                f"the checkpoint holds the batches {state['processes']} processes generated ahead, each its "
                f"share: resume it with as many processes (now {self.processes})"
            )
        self.batches = state["batches"]
        self.pending = deque((rows, _done(rollouts)) for rows, rollouts in state["pending"])
        if state["weight_version"] is not None:
            # The resumed run pushes the checkpoint's weights first: they get the version they had.
            self.engine.weight_version = state["weight_version"] - 1

    def close(self) -> None:
        if self.pool is not None:
            for _, future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)  # a generation in flight ends with its request
        self.generation.close()


def _done(result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future
