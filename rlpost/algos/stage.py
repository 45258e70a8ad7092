"""The pipeline-stage contract: what a stage is, what it declares, and the registry it is found in.

A stage is a function ``fn(batch, ctx, **kwargs) -> None`` or a class whose instances (built with
the recipe's kwargs) are called as ``stage(batch, ctx)``. It reads and writes fields of the step's
``Batch`` (``rlpost/types.py``) and declares, with ``@stage(...)`` or a ``stage_info`` attribute:

- ``kind``: where it runs. The controller runs the kinds in this order, each from its recipe key:
  ``shape`` (algo.shape, a list: reward shaping on the objective vector), ``combine``
  (algo.combiner: objectives -> scalar reward), ``advantage`` (algo.advantage), ``post``
  (algo.post, a list: clip or scale advantages), ``select`` (algo.select, a list: clear ``keep``),
  ``tokens`` (algo.tokens, a list: per-token loss weights; loss denominators come from these).
- ``locality``: what it looks across: ``row``, ``group`` (one prompt's completions), ``cohort``
  (all groups of one query) or ``batch``. Streamed steps and multi-round samplers check this, so
  no stage ever sees a partial group or batch by accident. Undeclared plug-ins count as ``batch``.
- ``needs``: ``old_logprobs`` / ``entropy`` (the pipeline runs ``learner.prepare`` first),
  ``progress`` (``ctx.step / ctx.total_steps``), ``learner`` (``ctx.learner``, a handle to call
  named learner methods on).

A class stage with state defines ``state_dict`` / ``load_state_dict``; it is saved in checkpoints.
One that names rewards defines ``check(rewards)`` (``{name: weight}``; raise ValueError), run at start-up.
One that learns from the policy between steps defines callback hooks (``on_start(ctx)``,
``after_step(ctx) -> metrics``; see rlpost/callbacks): the run calls them after the recipe's callbacks.
Kwargs annotated ``float`` / ``int`` arrive as numbers even when YAML read them as strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rlpost.registry import Registry

KINDS = ("shape", "combine", "advantage", "post", "select", "tokens")
LOCALITIES = ("row", "group", "cohort", "batch")
NEEDS = ("old_logprobs", "entropy", "progress", "learner")

STAGES: Registry = Registry("pipeline stage", builtins_module="rlpost.algos")


@dataclass(frozen=True)
class StageInfo:
    kind: str
    locality: str = "batch"
    needs: tuple[str, ...] = ()
    # Registered names this stage should run with; the pipeline warns when none of them is in the recipe.
    pairs_with: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"stage kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.locality not in LOCALITIES:
            raise ValueError(f"stage locality must be one of {', '.join(LOCALITIES)}, got {self.locality!r}")
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"stage needs must be among {', '.join(NEEDS)}, got {unknown}")


def stage(kind: str, locality: str = "batch", needs: tuple[str, ...] = (), pairs_with: tuple[str, ...] = ()) -> Callable:
    """Declare a stage function or class: ``@stage("select", locality="group")``."""
    info = StageInfo(kind, locality, tuple(needs), tuple(pairs_with))

    def deco(obj):
        obj.stage_info = info
        return obj

    return deco


@dataclass
class StageContext:
    """What a stage may read besides the batch."""

    step: int  # 0-based step being built
    total_steps: int
    learner: Any = None  # handle: ``ctx.learner.call("method", ...)``, for stages that declare "learner"
    # The recipe's advantage stage on other rewards, [B] -> [B] (set by the pipeline while it runs).
    advantage: Callable[[Any], Any] | None = None
    cohort: str | None = None  # the records' cohort column (data.cohort), for stages that look across a cohort

    @property
    def progress(self) -> float:
        """step / total_steps in [0, 1)."""
        return self.step / max(1, self.total_steps)
