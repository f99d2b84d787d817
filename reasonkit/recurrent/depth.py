"""The arithmetic of recurrent depth, as pure functions of tensors and numbers (Huginn; Geiping et al. 2025,
seal-rg/recurrent-pretraining, ``randomized_iteration_sampler`` and the KL exit of its generation).

- ``sample_depth``: how many core iterations one training forward runs, and through how many of the last
  ones the gradient flows (truncated backpropagation);
- ``successive_kl``: how far the output distribution moved between two iterations, the adaptive exit's
  criterion (a token stops iterating once it is below a threshold; Huginn: 5e-4).
"""

from __future__ import annotations

import math

import torch

# The log-normal's spread (Huginn's value): a heavy right tail, so deep iterations are seen now and then.
LOG_NORMAL_SIGMA = 0.5


def sample_depth(mean: int, backprop_depth: int, generator: torch.Generator) -> tuple[int, int]:
    """(iterations without gradient, iterations with gradient) of one training forward.

    r = 1 + Poisson(λ), with λ log-normal of mean ``mean`` (log λ ~ Normal(log mean − σ²/2, σ), σ = 1/2),
    so E[r] = mean + 1; the gradient flows through the last min(r, ``backprop_depth``) iterations only.

    >>> draws = [sample_depth(4, 2, torch.Generator().manual_seed(seed)) for seed in range(2000)]
    >>> all(grad == min(2, free + grad) and free + grad >= 1 for free, grad in draws)
    True
    >>> round(sum(free + grad for free, grad in draws) / len(draws))
    5
    """
    mu = math.log(mean) - LOG_NORMAL_SIGMA**2 / 2
    rate = torch.empty(1).log_normal_(mu, LOG_NORMAL_SIGMA, generator=generator)
    iterations = int(torch.poisson(rate, generator=generator).item()) + 1
    with_grad = min(iterations, backprop_depth)
    return iterations - with_grad, with_grad


def successive_kl(previous_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p_previous ‖ p) of each position's next-token distribution, from log-probabilities [..., V] -> [...].

    >>> p = torch.tensor([[0.5, 0.5], [0.9, 0.1]]).log()
    >>> successive_kl(p, p).tolist()
    [0.0, 0.0]
    >>> round(successive_kl(p[:1], p[1:]).item(), 4)  # 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1)
    0.5108
    """
    return (previous_logprobs.exp() * (previous_logprobs - logprobs)).sum(-1)
