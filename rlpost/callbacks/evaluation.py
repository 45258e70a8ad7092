"""Held-out evaluation as a callback: before RL, every N steps, after RL (train.eval_*)."""
from __future__ import annotations

from rlpost import console
from rlpost.callbacks.base import Callback, CallbackContext, every


class Evaluation(Callback):
    def __init__(self, every: int = 0, before: bool = False, after: bool = True) -> None:
        self.every, self.before, self.after = every, before, after

    def on_start(self, ctx: CallbackContext) -> None:
        if self.before and "before" not in ctx.evals:
            console.table("held-out evaluation before RL", {"before": ctx.evaluate("before")})

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        if not every(self.every, ctx.step) or ctx.last:  # the last step's model is evaluated "after"
            return None
        label = f"step{ctx.step + 1}"
        result = ctx.evaluate(label)
        console.table(f"held-out evaluation after step {ctx.step + 1}", {label: result})
        return {f"eval/{k}": v for k, v in result.items() if isinstance(v, float)}

    def on_end(self, ctx: CallbackContext) -> None:
        if self.after and "after" not in ctx.evals:
            ctx.evaluate("after")
