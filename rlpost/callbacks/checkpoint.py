"""Checkpoints as a callback: every N steps (train.save_every), at the end, and the final HF model."""
from __future__ import annotations

from rlpost.callbacks.base import Callback, CallbackContext, every


class Checkpoints(Callback):
    after_log = True  # a checkpoint holds the step's callbacks' work and follows its logged metrics

    def __init__(self, every: int = 0) -> None:
        self.every = every

    def after_step(self, ctx: CallbackContext) -> None:
        if every(self.every, ctx.step):
            ctx.checkpoint()

    def on_end(self, ctx: CallbackContext) -> None:
        if ctx.progressed:
            ctx.checkpoint()
        ctx.save_final()
