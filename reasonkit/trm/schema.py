"""The ``type: trm`` stage's recipe section: the puzzle task, the recursive network, and how it trains.

Every field is documented here, next to its definition; the recipe loader (reasonkit/recipe.py) builds
it strictly like every other stage. The ablation switches of the TRM paper are each one line:
``network.separate_networks``, ``network.num_layers``, ``network.block``, ``network.gradient``,
``ema``, ``halting`` (and ``network.mode`` for the no-recursion baselines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SudokuSettings:
    size: Literal[4, 6, 9] = 6  # 4x4 (2x2 boxes), 6x6 (2x3 boxes) or 9x9 (3x3 boxes)
    # Clues are removed while the solution stays unique, down to min_clues (0: until none can go).
    min_clues: int = 0
    max_clues: int | None = None  # keep only puzzles with at most this many clues
    # Keep only puzzles on which a constraint-propagation solver guesses at least / at most this often.
    min_guesses: int = 0
    max_guesses: int | None = None


@dataclass
class MazeSettings:
    side: int = 11  # odd; the grid is side x side cells, START and GOAL on rooms at least `side` steps apart


@dataclass
class PuzzleFile:
    """Puzzles in the Sudoku-Extreme shape (81-character puzzle/solution strings, '.' or '0' blank) from a
    local .csv/.jsonl/.json/.parquet file or a hub dataset id."""

    path: str
    split: str = "train"  # hub datasets
    puzzle_column: str | None = None  # null: puzzle, question, quizzes or q
    solution_column: str | None = None  # null: solution, answer, solutions or a
    max_rows: int | None = None


@dataclass
class TRMTask:
    name: Literal["sudoku", "maze"] = "sudoku"
    sudoku: SudokuSettings = field(default_factory=SudokuSettings)
    maze: MazeSettings = field(default_factory=MazeSettings)
    # Generated puzzles (when no file is given); held-out ones are distinct up to the puzzle's symmetries
    # from each other and from every training puzzle, so augmentation cannot leak them.
    train_size: int = 3000
    test_size: int = 500
    seed: int = 0  # fixes the puzzles, independently of the training seed
    train_file: PuzzleFile | None = None  # Sudoku only: read instead of generating
    test_file: PuzzleFile | None = None
    # Each training example is shown under a fresh random symmetry (Sudoku: relabelling, band/stack and
    # row/column permutations, transpose; mazes: the 8 rotations/reflections).
    augment: bool = False
    # An extra held-out set, harder than training (e.g. fewer clues); evaluated next to the test set.
    harder: SudokuSettings | None = None
    harder_size: int = 200


@dataclass
class TRMNetwork:
    # trm: the recursion below. single_pass: the same network applied once to x (no recursion, one
    # supervision step). unshared: latent_steps + 1 separate networks applied once each in a row (the
    # depth of one recursion block without sharing), one supervision step.
    mode: Literal["trm", "single_pass", "unshared"] = "trm"
    hidden_size: int = 128
    num_layers: int = 2  # layers of the network f
    # mlp_t: an MLP across positions instead of attention (the reference's choice for Sudoku; needs a
    # fixed sequence length); attention: self-attention with rotary position embeddings.
    block: Literal["mlp_t", "attention"] = "mlp_t"
    num_heads: int = 4  # attention only
    expansion: float = 4.0  # hidden width of the SwiGLU MLPs, as a multiple of hidden_size
    latent_steps: int = 3  # n: z <- f(x + y + z) this many times per recursion
    recursions: int = 2  # T: (n latent updates + 1 answer update) blocks per supervision step; the
    # first T-1 run without gradients
    separate_networks: bool = False  # one network for z and another for y (the paper's ablation)
    # full: backpropagate through the last recursion's n+1 applications; one_step: only through the last
    # latent and the answer update (HRM's 1-step gradient approximation)
    gradient: Literal["full", "one_step"] = "full"
    # The states y and z start from: fixed random vectors (as the reference; with T >= 2 a learned start
    # would get no gradient, as it only enters the gradient-free recursions) or zeros.
    init_states: Literal["random", "zero"] = "random"


@dataclass
class TRMStage:
    """Tiny Recursive Model: z <- f(x + y + z) n times, y <- f(y + z), T times, with deep supervision."""

    type: Literal["trm"] = "trm"
    init: str = "model"  # "model": a freshly initialised network; or an earlier trm stage to continue
    task: TRMTask = field(default_factory=TRMTask)
    network: TRMNetwork = field(default_factory=TRMNetwork)

    # Deep supervision and halting
    # N_sup: at most this many supervision steps per example, each with its loss and optimizer step;
    # (y, z) carry over, detached. mode single_pass/unshared: always 1.
    supervision_steps: int = 6
    # A Q head on y predicts whether the answer is right (BCE); an example leaves training when it says
    # halt. false: every example takes all supervision_steps.
    halting: bool = True
    halt_exploration: float = 0.1  # chance that an example must run a random number of steps first
    halt_loss_weight: float = 0.5
    # stablemax: the reference's stable-max cross-entropy (s(x) = x+1 for x >= 0, 1/(1-x) below); softmax
    loss: Literal["softmax", "stablemax"] = "softmax"

    # Optimiser: AdamW, float32
    batch_size: int = 64  # examples in flight per optimizer step, over all processes
    max_steps: int = 1000  # optimizer steps (= supervision steps of a batch)
    learning_rate: float = 1e-3
    lr_scheduler: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0  # linear warm-up from 0
    weight_decay: float = 0.1  # the reference uses 1.0 on Sudoku-Extreme
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    # Evaluate an exponential moving average of the weights. ema_decay null: 1 - 10/max_steps (at most
    # 0.999), so the starting weights weigh e^-10 at the end; a decay that leaves them more than 5% is refused.
    ema: bool = True
    ema_decay: float | None = None

    # Evaluation (held-out puzzles, after training)
    # Supervision steps to report accuracy at; empty: 1, N_sup/2, N_sup, 2 N_sup, 4 N_sup.
    eval_steps: list[int] = field(default_factory=list)
    # Third halting rule: stop when the answer state moves less than this (relative change of y).
    fixed_point_tolerance: float = 0.01
    eval_batch_size: int = 256
    confidence: float = 0.95  # of the bootstrap interval of exact accuracy

    # Bookkeeping
    logging_steps: int = 10
    save_steps: int | None = None  # checkpoint (weights, optimiser, EMA, carried states) every N steps
    seed: int | None = None  # null: the recipe's seed


def effective_supervision_steps(stage: TRMStage) -> int:
    return stage.supervision_steps if stage.network.mode == "trm" else 1


def default_eval_steps(stage: TRMStage) -> list[int]:
    """The test-time supervision steps to report, including more than training used.

    >>> default_eval_steps(TRMStage(supervision_steps=6))
    [1, 3, 6, 12, 24]
    """
    n = effective_supervision_steps(stage)
    if stage.network.mode != "trm":
        return [1]  # the baselines answer in one step; more would feed their answer back (a recursion)
    if stage.eval_steps:
        return sorted(set(stage.eval_steps))
    return sorted({1, max(1, n // 2), n, 2 * n, 4 * n})


def ema_decay(stage: TRMStage) -> float:
    """The EMA decay used: the recipe's, or one scaled to the run's length.

    >>> round(ema_decay(TRMStage(max_steps=1000)), 4), ema_decay(TRMStage(max_steps=100_000))
    (0.99, 0.999)
    """
    if stage.ema_decay is not None:
        return stage.ema_decay
    return max(0.0, min(0.999, 1 - 10 / stage.max_steps))  # 0 for runs of <= 10 steps: the last weights


def validate(name: str, stage: TRMStage, recipe, trained: list[str]) -> list[str]:
    """Settings that cannot work, found before anything is generated or built."""
    errors = []
    where = f"stages.{name}"
    net, task = stage.network, stage.task
    if task.name == "maze" and (task.train_file or task.test_file or task.harder):
        errors.append(f"{where}.task: files and `harder` are for Sudoku; mazes are generated")
    if task.name == "maze" and (net.block == "mlp_t") and task.maze.side > 31:
        errors.append(f"{where}.network.block: mlp_t on {task.maze.side}^2 positions is huge; use attention")
    if task.name == "maze" and (task.maze.side < 5 or task.maze.side % 2 == 0):
        errors.append(f"{where}.task.maze.side: {task.maze.side}; use an odd number >= 5")
    if net.block == "attention" and net.hidden_size % net.num_heads:
        errors.append(
            f"{where}.network: hidden_size {net.hidden_size} is not a multiple of num_heads {net.num_heads}"
        )
    if net.block == "attention" and (net.hidden_size // max(net.num_heads, 1)) % 2:
        errors.append(f"{where}.network: rotary embeddings need an even head dim")
    for key in ("latent_steps", "recursions", "num_layers", "hidden_size"):
        if getattr(net, key) < 1:
            errors.append(f"{where}.network.{key}: at least 1")
    for key in ("supervision_steps", "batch_size", "max_steps", "eval_batch_size", "logging_steps"):
        if getattr(stage, key) < 1:
            errors.append(f"{where}.{key}: at least 1")
    if not 0 <= stage.halt_exploration <= 1:
        errors.append(f"{where}.halt_exploration: {stage.halt_exploration} is a probability")
    if any(k < 1 for k in stage.eval_steps):
        errors.append(f"{where}.eval_steps: supervision steps are >= 1")
    if stage.ema:
        decay = ema_decay(stage)
        if not 0 <= decay < 1:
            errors.append(f"{where}.ema_decay: {decay}; between 0 and 1")
        elif decay**stage.max_steps > 0.05:
            errors.append(
                f"{where}.ema_decay: {decay} over {stage.max_steps} steps leaves the initial weights "
                f"{decay**stage.max_steps:.0%} of the average, so evaluation would score them; use at most "
                f"{max(0.0, 1 - 3 / stage.max_steps):.4g} or leave it null (scaled to the run)"
            )
    return errors


def objective(stage: TRMStage) -> dict:
    """What the stage optimises, without building anything (for --dry-run and trackers)."""
    net = stage.network
    return {
        "method": f"trm ({net.mode})",
        "recursion": f"z <- f(x + y + z) x{net.latent_steps}, y <- f(y + z); x{net.recursions} (last with gradients: {net.gradient})"
        if net.mode == "trm"
        else "none",
        "supervision_steps": effective_supervision_steps(stage),
        "loss": f"{stage.loss} cross-entropy per cell"
        + (f" + {stage.halt_loss_weight} x halting BCE" if stage.halting and net.mode == "trm" else ""),
        "optimizer": f"AdamW lr {stage.learning_rate}, betas ({stage.adam_beta1}, {stage.adam_beta2}), weight decay {stage.weight_decay}",
        "ema_decay": ema_decay(stage) if stage.ema else None,
    }
