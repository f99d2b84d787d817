"""Built-in tasks that need no download."""

from reasonkit.tasks.arithmetic import Problem, arithmetic_splits, teacher_trace

__all__ = ["Problem", "arithmetic_splits", "teacher_trace"]
