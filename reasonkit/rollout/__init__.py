"""Generation engines behind one interface."""

from reasonkit.rollout.base import Rollout, SamplingSettings
from reasonkit.rollout.transformers_engine import TransformersEngine

__all__ = ["Rollout", "SamplingSettings", "TransformersEngine"]
