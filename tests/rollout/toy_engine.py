"""An engine defined outside the package, as a user's own would be: it answers every arithmetic prompt
right, with the working, whatever the model (it never looks at one)."""

import re

from reasonkit.rollout import Rollout


class AnswerEngine:
    logprobs_are_trainers = True  # nothing to weigh: it is only used to evaluate

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def from_inputs(cls, inputs):
        return cls(inputs.tokenizer)

    def generate(self, prompt_texts, sampling, progress=None, with_logprobs=False):
        rollouts = []
        for index, prompt in enumerate(prompt_texts):
            a, b = map(int, re.search(r"(\d+) \* (\d+)", prompt).groups())
            text = f"<think>{a} * {b} = {a * b}.</think>{a * b}"
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            rollouts += [Rollout(index, prompt_ids, ids, None, text, truncated=False)] * sampling.n
        if progress is not None:
            progress.update(len(prompt_texts))
        return rollouts

    def sync_weights(self, model):
        pass

    def close(self):
        pass
