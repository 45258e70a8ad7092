"""Held-out evaluation as a callback: before RL, every N steps, after RL (train.eval_*)."""
from __future__ import annotations

from rlpost.callbacks.base import Callback, CallbackContext, every


class Evaluation(Callback):
    def __init__(self, every: int = 0, before: bool = False, after: bool = True) -> None:
        self.every, self.before, self.after = every, before, after

    def on_start(self, ctx: CallbackContext) -> None:
        if self.before and "before" not in ctx.evals:
            result = ctx.evaluate("before")
            ctx.print("eval before RL: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float)))

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        if not every(self.every, ctx.step) or ctx.last:  # the last step's model is evaluated "after"
            return None
        return {f"eval/{k}": v for k, v in ctx.evaluate(f"step{ctx.step + 1}").items() if isinstance(v, float)}

    def on_end(self, ctx: CallbackContext) -> None:
        if self.after and "after" not in ctx.evals:
            ctx.evaluate("after")
