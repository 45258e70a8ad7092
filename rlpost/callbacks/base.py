"""The callback seam: components the loop runs between RL steps.

A callback is a class (built with the recipe's kwargs) with any of these methods:

- ``check(steps, learner)``: at start-up, before any model loads; raise ValueError naming what is
  wrong (``steps`` is train.steps, ``learner`` the recipe's learner section);
- ``on_start(ctx)``, ``after_step(ctx) -> metrics | None``, ``on_end(ctx)``;
- ``state_dict()`` / ``load_state_dict(state)``: saved in checkpoints, restored on resume.

or a function ``fn(ctx, **kwargs) -> metrics | None``, called after every step. ``ctx`` (a
``CallbackContext``) reads and writes the learner's weights, syncs them, evaluates and checkpoints.

Order each step: the recipe's ``callbacks`` in their order, then pipeline stages with callback hooks
(e.g. the hypervolume combiner's validation), then evaluation (train.eval_*), then the step's metrics
are logged, then checkpoints (train.save_every) so a checkpoint holds what every callback did in the step.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rlpost import console
from rlpost.config import Config, ConfigError, LearnerConfig
from rlpost.registry import Registry

if TYPE_CHECKING:
    from rlpost.controller import Run

CALLBACKS: Registry = Registry("callback", ("rlpost.callbacks.next", "rlpost.callbacks.linear_extrapolation", "rlpost.callbacks.rank_eval"))


def every(n: int, step: int) -> bool:
    """True after every n-th step (n=0: never)."""
    return n > 0 and (step + 1) % n == 0


class Callback:
    after_log = False  # True: runs after the step's metrics are logged (checkpoints)

    def check(self, steps: int, learner: LearnerConfig) -> None:
        pass

    def on_start(self, ctx: CallbackContext) -> None:
        pass

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        return None

    def on_end(self, ctx: CallbackContext) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FunctionCallback(Callback):
    """A plug-in function ``fn(ctx, **kwargs)``, called after every step."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any]) -> None:
        self.fn, self.kwargs = fn, kwargs

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        return self.fn(ctx, **self.kwargs)


class CallbackContext:
    """What a callback may see and do. ``step`` is the step just trained (0-based); after it the
    learner has made ``step + 1`` updates."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self.step = run.state["step"] - 1
        self.total_steps = run.cfg.train.steps
        self.last = False
        self.metrics: dict[str, Any] = {}

    def print(self, text: str) -> None:
        """A message on the console, above the progress bars."""
        console.echo(text)

    @property
    def evals(self) -> dict[str, Any]:
        """Every evaluation of the run so far, by label."""
        return self._run.state["evals"]

    @property
    def progressed(self) -> bool:
        """The run trained at least one step in this process (it did not resume at its end)."""
        return self._run.resumed_step is None or self._run.state["step"] > self._run.resumed_step

    def evaluate(self, label: str) -> dict[str, Any]:
        """Held-out evaluation of the rollout engine's current weights (eval_<label>.json)."""
        return self._run.evaluate(label)

    def validate(self, prompts: int) -> dict[str, Any]:
        """Greedy evaluation (accuracy, mean length, each reward's mean) of the rollout engine's current
        weights on the first ``prompts`` records of the training split (for choices inside a method;
        the held-out eval split stays unseen)."""
        return self._run.validate(prompts)

    def checkpoint(self) -> None:
        self._run.checkpoint()

    @property
    def run_dir(self) -> Path:
        """The run's output folder."""
        return self._run.dir

    def save_model(self, folder: str | Path) -> Path:
        """The learner's current weights as a plain Hugging Face folder, with the task they train on."""
        from rlpost.data.recipe import save_task_record

        self._run.learner.call("save_hf", str(folder))
        save_task_record(folder, self._run.cfg)
        return Path(folder)

    def save_final(self) -> None:
        """The trained model as a plain Hugging Face folder: <run>/final (with the task it was trained on)."""
        self.save_model(self._run.dir / "final")

    def read_weights(self, kind: str = "merged") -> dict[str, Any]:
        """Copies of the learner's weight matrices: ``merged`` (effective) or ``lora`` ((A, B, scale))."""
        return self._run.learner.call("read_weights", kind)

    def write_weights(self, weights: dict[str, Any]) -> dict[str, float]:
        """New effective weights for the learner (LoRA: a rebase); then ``sync`` before anything generates."""
        return self._run.learner.call("write_weights", weights)

    def request_full_sync(self) -> None:
        """The next sync sends every weight (a self-contained anchor), not only what changed."""
        self._run.learner.call("request_full_sync")

    def full_sync(self) -> dict[str, float]:
        """Every weight to the rollout engine now, its logprob parity measured (fatal above tolerance when
        train.parity_check_every is on); returns the sync's metrics."""
        self.request_full_sync()
        return self._run.sync_now(self.step)


class StageHooks(Callback):
    """A pipeline stage's callback hooks; its state travels with the pipeline's, not here."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage

    def on_start(self, ctx: CallbackContext) -> None:
        if hasattr(self.stage, "on_start"):
            self.stage.on_start(ctx)

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        return self.stage.after_step(ctx) if hasattr(self.stage, "after_step") else None


class Callbacks:
    """The run's callbacks in order; their states travel in checkpoints as one list."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items

    def _call(self, hook: str, ctx: CallbackContext, after_log: bool | None = None) -> list[Any]:
        """``hook(ctx)`` of every callback that has it (only those with this ``after_log``, when given)."""
        return [
            getattr(cb, hook)(ctx) for _, cb in self.items
            if hasattr(cb, hook) and (after_log is None or getattr(cb, "after_log", False) == after_log)
        ]

    def on_start(self, ctx: CallbackContext) -> None:
        self._call("on_start", ctx)

    def after_step(self, ctx: CallbackContext, log: Callable[[dict[str, Any]], None]) -> None:
        """Callbacks in order, each seeing the metrics of those before it; the log line; then checkpoints."""
        for _, cb in self.items:
            if hasattr(cb, "after_step") and not getattr(cb, "after_log", False):
                ctx.metrics.update(cb.after_step(ctx) or {})
        log(ctx.metrics)
        self._call("after_step", ctx, after_log=True)

    def on_end(self, ctx: CallbackContext) -> None:
        self._call("on_end", ctx)

    def state_dict(self) -> list[dict[str, Any]]:
        return [{"name": name, "state": cb.state_dict() if hasattr(cb, "state_dict") else {}} for name, cb in self.items]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        names = [n for n, _ in self.items]
        if not states:  # checkpoints from before callbacks: fine unless a callback has state to restore
            stateful = [n for n, cb in self.items if hasattr(cb, "state_dict") and cb.state_dict()]
            if stateful:
                raise ConfigError(f"the checkpoint holds no state for the callbacks {stateful} (written before they "
                                  "existed): pass --no-resume, or resume without them")
            return
        if [s["name"] for s in states] != names:
            raise ConfigError(f"the checkpoint's callbacks {[s['name'] for s in states]} differ from this recipe's {names}: "
                              "pass --no-resume, or keep the callbacks the run started with")
        for (_, cb), s in zip(self.items, states):
            if hasattr(cb, "load_state_dict"):
                cb.load_state_dict(s["state"])


def build_callbacks(cfg: Config, stages: list[tuple[str, Any]] = ()) -> Callbacks:
    """The recipe's callbacks, then the hooks of pipeline ``stages`` ((label, stage)), then evaluation
    and checkpoints; every kwarg and check before any model loads."""
    from rlpost.callbacks.checkpoint import Checkpoints
    from rlpost.callbacks.evaluation import Evaluation
    from rlpost.pipeline import typed_kwargs

    items: list[tuple[str, Any]] = []
    for i, spec in enumerate(cfg.callbacks):
        where = f"callbacks[{i}] '{spec.name}'"
        try:
            obj = CALLBACKS.get(spec.target)
        except Exception as e:  # a plug-in file can fail to import with anything
            raise ConfigError(f"{where}: cannot resolve '{spec.target}': {e}") from None
        try:
            if isinstance(obj, type):
                params = list(inspect.signature(obj.__init__).parameters.values())[1:]
                cb = obj(**typed_kwargs(where, params, spec.kwargs))
            elif callable(obj):
                inspect.signature(obj).bind(None, **spec.kwargs)
                cb = FunctionCallback(obj, spec.kwargs)
            else:
                raise TypeError(f"'{spec.target}' is a {type(obj).__name__}, not a callback class or function")
            if hasattr(cb, "check"):
                cb.check(cfg.train.steps, cfg.learner)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        items.append((spec.name, cb))
    items += [(label, StageHooks(st)) for label, st in stages]
    t = cfg.train
    items.append(("evaluation", Evaluation(every=t.eval_every, before=t.eval_before, after=t.eval_after)))
    items.append(("checkpoints", Checkpoints(every=t.save_every)))
    return Callbacks(items)
