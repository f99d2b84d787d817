"""An environment and a reward of the shape TRL's OpenEnv guide gives (the reward reads what each rollout
left in its environment instance: ``[env.reward for env in environments]``), loaded by path like a
user's file. The environment's tool is the calculator `tests/helpers/tool_model.py` taught its model to
call, with the same schema, so the model calls it; each call counts."""

from reasonkit.tools.builtin import calculator as evaluate


class CalculatorEnv:
    def reset(self, **kwargs) -> None:
        self.reward = 0.0

    def get_reward(self) -> float:  # read as the rollout ends: what the reward below must see too
        return self.reward

    def calculator(self, expression: str) -> str:
        self.reward += 1.0
        return evaluate(expression)

    calculator.__doc__ = evaluate.__doc__


def calls_made(environments, **kwargs) -> list[float]:
    return [env.reward for env in environments]
