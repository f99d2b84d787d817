"""What a reward function receives: TRL's GRPOTrainer calling convention, in both of its shapes.

A reward is called as TRL calls it::

    fn(prompts=..., completions=..., completion_ids=..., **dataset_columns,
       trainer_state=..., log_extra=..., log_metric=...) -> list[float | None]

**Shapes.** TRL passes text in the dataset's shape, and rewards are written for one of them:

- ``text``: a prompt is a string, a completion is a string;
- ``conversational``: a prompt is a list of messages (``[{"role": "user", "content": ...}]``), a
  completion is a list of one message, ``[{"role": "assistant", "content": ...}]``: what TRL's own
  ``trl.rewards`` and open-r1's rewards read (``completion[0]["content"]``).

Which one a reward gets is decided per reward, by the first rule that applies (``shape_for``):

1. the recipe says so: ``completions: conversational`` or ``completions: text`` on the reward
   (``--completions`` on the command line);
2. the reward declares it: a ``completions`` parameter annotated with a type naming ``dict``
   (TRL's ``list[list[dict[str, str]]]``) gets messages, one annotated with strings only
   (``list[str]``) gets text;
3. the prompt data decides, as in TRL: conversational when the ``prompt`` column holds message lists,
   text when it holds strings (the built-in arithmetic task, plain prompt files).

A string prompt given to a conversational reward becomes one user message; a message-list prompt given
to a text reward becomes the content of its last user message. The completion's text is the same in
both shapes: the whole response, with a ``<think>`` that the chat template opened put back in front.
The built-in rewards accept both shapes (``accepts_both``).

**Extra keyword arguments**, as TRL 1.16 passes them: ``trainer_state`` (``TrainerState``: at least
``global_step``, the optimisation steps finished before this batch), ``log_metric(name, value)`` and
``log_extra(column, values)``. Rewards run one completion per call here (``rewards.pool``), so what a
reward logs is collected per call (``RewardLog``) and put together per batch by the caller.

**Environments.** A reward that names an ``environments`` parameter (TRL's, with ``environment_factory``)
gets the environment instance that ran each completion, the list of one per call
(``[env.reward for env in environments]`` reads the state a rollout left): ``takes_environments``.
"""

from __future__ import annotations

import functools
import inspect
from collections import defaultdict
from dataclasses import dataclass, field

SHAPES = ("auto", "text", "conversational")
# Errors a reward raises when it is handed the other shape (a string indexed like a message, ...).
SHAPE_ERRORS = (TypeError, KeyError, AttributeError, IndexError)


@dataclass(frozen=True)
class TrainerState:
    """The fields of ``transformers.TrainerState`` that rewards read for shaping by training progress."""

    global_step: int = 0  # optimisation steps finished before the batch being scored
    max_steps: int = 0
    epoch: float = 0.0  # passes over the prompt data so far


@dataclass
class RewardLog:
    """What one reward call logged through ``log_metric`` and ``log_extra``."""

    metrics: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    extra: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name].append(float(value))

    def log_extra(self, column: str, values: list) -> None:
        self.extra[column].extend(values)

    def plain(self) -> tuple[dict, dict]:
        """Picklable copies, to send back from a worker process."""
        return dict(self.metrics), dict(self.extra)


def is_messages(value) -> bool:
    """TRL's test for conversational data: a list whose first item is a message (a dict with a role).

    >>> is_messages([{"role": "user", "content": "hi"}]), is_messages("hi"), is_messages([])
    (True, False, False)
    """
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def declared_shape(fn) -> str | None:
    """The shape a reward's ``completions`` annotation names, or None when it names none.

    >>> def trl_style(completions: list[list[dict[str, str]]], **kwargs): ...
    >>> def plain(completions: list[str], **kwargs): ...
    >>> def bare(completions, **kwargs): ...
    >>> declared_shape(trl_style), declared_shape(plain), declared_shape(bare)
    ('conversational', 'text', None)
    """
    try:
        parameter = inspect.signature(fn).parameters.get("completions")
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return None
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return None
    annotation = parameter.annotation
    text = (annotation if isinstance(annotation, str) else repr(annotation)).lower()
    if "dict" in text:
        return "conversational"
    return "text" if "str" in text else None


class DecidedShape(str):
    """A shape already decided (by ``shape_for``), carrying why: it goes wherever a shape name goes (a
    ``RewardCall``, a worker process), so that the error a reward given the wrong shape raises names the
    rule that decided it, not "set on the reward". ``rewards check`` decides once for its whole battery.

    >>> def bare(completions, **kwargs): ...
    >>> decided = DecidedShape("text", "the prompts are strings")
    >>> decided == "text", shape_for(bare, decided, [{"role": "user", "content": "?"}])
    (True, ('text', 'the prompts are strings'))
    """

    reason: str

    def __new__(cls, shape: str, reason: str):
        assert shape in SHAPES and shape != "auto", shape
        decided = super().__new__(cls, shape)
        decided.reason = reason
        return decided

    def __reduce__(self):  # pickled for the worker processes with its reason
        return DecidedShape, (str(self), self.reason)


def shape_for(fn, requested: str, prompt) -> tuple[str, str]:
    """The shape ``fn`` gets, and why (the rules in the module docstring, in order). ``requested``: a
    name in ``SHAPES``, or a ``DecidedShape``, kept with its reason.

    >>> def bare(completions, **kwargs): ...
    >>> shape_for(bare, "auto", "What is 6 * 7?"), shape_for(bare, "auto", [{"role": "user", "content": "?"}])
    (('text', 'the prompts are strings'), ('conversational', 'the prompts are message lists'))
    >>> shape_for(bare, "conversational", "What is 6 * 7?")
    ('conversational', 'set on the reward')
    """
    assert requested in SHAPES, requested
    if isinstance(requested, DecidedShape):
        return str(requested), requested.reason
    if requested != "auto":
        return requested, "set on the reward"
    declared = declared_shape(fn)
    if declared is not None:
        return declared, "declared by its `completions` annotation"
    if is_messages(prompt):
        return "conversational", "the prompts are message lists"
    return "text", "the prompts are strings"


def prompt_text(prompt) -> str:
    """A prompt as text: a string as it is, a message list as its last user message's content.

    >>> prompt_text("6 * 7?"), prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6 * 7?"}])
    ('6 * 7?', '6 * 7?')
    """
    if not is_messages(prompt):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"] or prompt
    return users[-1].get("content") or ""


def completion_text(completion) -> str:
    """A completion as text: a string as it is, messages as their contents joined.

    >>> completion_text("<think>.</think>42"), completion_text([{"role": "assistant", "content": "<think>.</think>42"}])
    ('<think>.</think>42', '<think>.</think>42')
    """
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion)


def in_shape(shape: str, prompts: list, completions: list[str]) -> tuple[list, list]:
    """Prompts and completions (text) as a reward of ``shape`` reads them.

    >>> in_shape("conversational", ["6 * 7?"], ["42"])
    ([[{'role': 'user', 'content': '6 * 7?'}]], [[{'role': 'assistant', 'content': '42'}]])
    """
    if shape == "text":
        return [prompt_text(p) for p in prompts], list(completions)
    return (
        [p if is_messages(p) else [{"role": "user", "content": p}] for p in prompts],
        [[{"role": "assistant", "content": c}] for c in completions],
    )


def call_reward(
    fn,
    prompts: list,
    completions: list[str],
    columns: dict,
    *,
    shape: str = "auto",
    trainer_state: TrainerState | None = None,
    log: RewardLog | None = None,
) -> list:
    """Call ``fn`` as TRL's GRPOTrainer would, in the shape decided by ``shape_for``.

    ``shape``: a name in ``SHAPES`` or a ``DecidedShape``. ``columns``: per-completion lists (the
    dataset's columns, ``completion_ids``, ...). What the reward logs goes to ``log`` (dropped when
    None). An error a reward given the other shape would raise (TypeError, KeyError, ...) carries the
    shape it was given, and why, for ``describe_error``.
    """
    shape, reason = shape_for(fn, shape, prompts[0] if prompts else None)
    shaped_prompts, shaped_completions = in_shape(shape, prompts, completions)
    log = log if log is not None else RewardLog()
    try:
        return fn(
            prompts=shaped_prompts,
            completions=shaped_completions,
            **columns,
            trainer_state=trainer_state if trainer_state is not None else TrainerState(),
            log_extra=log.log_extra,
            log_metric=log.log_metric,
        )
    except SHAPE_ERRORS as exc:
        if exc.__traceback__.tb_next is None:  # raised by the call itself: the arguments do not fit
            exc.reward_shape_hint = (
                " (TRL passes every dataset column and trainer_state, log_extra, log_metric by name: "
                "a reward takes **kwargs for those it does not read)"
            )
            raise
        other = "text" if shape == "conversational" else "conversational"
        exc.reward_shape_hint = (
            f" (it was given {shape} completions: {reason}; a reward written for {other} ones needs "
            f"`completions: {other}` on it in the recipe, or --completions {other})"
        )
        raise


def takes_environments(fn) -> bool:
    """Whether a reward reads the environment instances of its completions (names ``environments``).

    >>> takes_environments(lambda environments, **kwargs: []), takes_environments(lambda completions, **kwargs: [])
    (True, False)
    """
    try:
        return "environments" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a callable without a signature (a builtin)
        return False


def describe_error(exc: BaseException) -> str:
    """``"TypeError: ..."``, with the shape the reward was given when the error may come from it."""
    return f"{type(exc).__name__}: {exc}{getattr(exc, 'reward_shape_hint', '')}"


def accepts_both(fn):
    """For the built-in rewards: take prompts and completions in either shape, read them as text."""

    @functools.wraps(fn)
    def reward(prompts, completions, *args, **kwargs):
        return fn(
            [prompt_text(p) for p in prompts], [completion_text(c) for c in completions], *args, **kwargs
        )

    return reward
