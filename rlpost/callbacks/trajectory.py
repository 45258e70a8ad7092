"""Extrapolating the training trajectory: the part NExt and the linear baseline share.

Every ``interval`` steps up to ``observe`` (T_obs) the callback snapshots the learner's weight
matrices: LoRA factors (``capture: lora``; cheap, exact low-rank deltas) or effective weights
(``merged``; any update mode that can be written, at the cost of full copies). At T_obs it asks
its method for the update, writes ``W_T + update`` back (under LoRA a rebase: the adapter restarts
on the moved base, the KL reference stays the starting policy), sends every weight to the rollout
engine with a parity check, and RL goes on. One jump per run (spec B.4: a second cycle needs its
own snapshots).

``coef`` is one extending coefficient, or a grid: then every candidate is written, synced and scored
by greedy accuracy on the first ``select_prompts`` records of the training split (never the held-out
eval split), and the best is kept, the smaller on ties (the spec's proposal, B.4 step 5).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from rlpost.algos.next import Snapshot, dense_delta
from rlpost.callbacks.base import Callback, CallbackContext
from rlpost.config import ConfigError, LearnerConfig


class Extrapolation(Callback):
    prefix = "extrapolation"  # metrics: <prefix>/...

    def __init__(self, interval: int = 10, observe: int = 150, horizon: int = 50, coef: float | list[float] = 3.0,
                 capture: str = "auto", rank: int = 1, eval_jump: bool = True, select_prompts: int = 200) -> None:
        coefs = [float(c) for c in coef] if isinstance(coef, (list, tuple)) else [float(coef)]
        if min(interval, observe, horizon, rank, select_prompts) < 1:
            raise ValueError(f"interval, observe, horizon, rank and select_prompts must be >= 1, "
                             f"got {interval}, {observe}, {horizon}, {rank}, {select_prompts}")
        if not coefs or min(coefs) < 0 or (len(coefs) == 1 and coefs[0] <= 0):
            raise ValueError(f"coef must be > 0, or a grid of coefficients >= 0, got {coef}")
        if capture not in ("auto", "lora", "merged"):
            raise ValueError(f"capture must be auto, lora or merged, got {capture!r}")
        self.interval, self.observe, self.horizon, self.coefs = interval, observe, horizon, coefs
        self.capture, self.rank, self.eval_jump, self.select_prompts = capture, rank, eval_jump, select_prompts
        self.steps: list[int] = []
        self.snaps: list[dict[str, Snapshot]] = []
        self.origin: dict[str, Snapshot] = {}
        self.done = False

    def check(self, steps: int, learner: LearnerConfig) -> None:
        if learner.update == "sparse":
            raise ValueError("cannot serve learner.update=sparse: a dense update would break the mask (use lora or full)")
        if self.interval > steps:
            raise ValueError(f"interval={self.interval} is longer than the run (train.steps={steps})")
        if self.observe > steps:
            raise ValueError(f"observe={self.observe} is past the run's end (train.steps={steps}): the jump would never happen")
        if self.observe % self.interval or self.horizon % self.interval:
            raise ValueError(f"observe={self.observe} and horizon={self.horizon} must be multiples of interval={self.interval}")
        if self.observe < 2 * self.interval + self.horizon:
            raise ValueError(f"observe={self.observe} leaves fewer than two training pairs: it must be at least "
                             f"2 x interval + horizon = {2 * self.interval + self.horizon}")
        if self.capture == "auto":
            self.capture = "lora" if learner.update == "lora" else "merged"
        if self.capture == "lora" and learner.update != "lora":
            raise ValueError(f"capture=lora needs learner.update=lora (this run: {learner.update}); use capture=merged")
        if learner.update == "lora" and self.rank > learner.lora.r:
            raise ValueError(f"rank={self.rank} is larger than the adapter's rank (learner.lora.r={learner.lora.r})")

    def predict(self) -> tuple[Callable[[float], dict[str, torch.Tensor]], dict[str, float]]:
        """A map from an extending coefficient to the update to add to W_T per matrix, and the method's metrics."""
        raise NotImplementedError

    def on_start(self, ctx: CallbackContext) -> None:
        if self.capture == "merged" and not self.origin and ctx.step < 0:  # W_0 of a fresh run
            self.origin = ctx.read_weights("merged")

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        t = ctx.step + 1  # updates made so far
        if self.done or t > self.observe or t % self.interval:
            return None
        self.steps.append(t)
        self.snaps.append(ctx.read_weights(self.capture))
        return self.jump(ctx) if t == self.observe else None

    def jump(self, ctx: CallbackContext) -> dict[str, float]:
        p, metrics = self.prefix, {}
        if self.eval_jump:
            metrics[f"{p}/accuracy_before"] = accuracy(ctx.evaluate(f"step{ctx.step + 1}_before_jump"))
        t0 = time.perf_counter()
        make, found = self.predict()
        metrics.update({f"{p}/{k}": v for k, v in found.items()})
        current = ctx.read_weights("merged")

        def write(c: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
            updates = make(c)
            ctx.write_weights({n: current[n] + u.to(current[n].dtype) for n, u in updates.items()})
            return updates, ctx.full_sync()

        coef = self.coefs[0]
        if len(self.coefs) > 1:  # each candidate in turn on the rollout engine, scored on training prompts
            scores = {}
            for c in self.coefs:
                write(c)
                scores[c] = ctx.validate(self.select_prompts)["greedy_accuracy"]
                metrics[f"{p}/select_accuracy/coef={c:g}"] = scores[c]
            coef = max(self.coefs, key=lambda c: (scores[c], -c))
        updates, sync = write(coef)
        moved = sum(float(u.norm()) ** 2 for u in updates.values()) ** 0.5
        learned = sum(float(dense_delta(self.snaps[-1][n], self.origin.get(n)).norm()) ** 2 for n in updates) ** 0.5
        metrics.update({
            f"{p}/coef": coef, f"{p}/matrices": float(len(updates)), f"{p}/update_norm": moved,
            # the jump against everything learned before it: ~ how many observed runs' worth it moves
            f"{p}/update_ratio": moved / learned if learned else 0.0,
            f"{p}/parity_max_diff": sync.get("sync/parity_max_diff", float("nan")),
            f"{p}/seconds": time.perf_counter() - t0,  # predict, select, write back, sync: not the evaluations
        })
        if self.eval_jump:
            metrics[f"{p}/accuracy_after"] = accuracy(ctx.evaluate(f"step{ctx.step + 1}_after_jump"))
        self.done, self.steps, self.snaps, self.origin = True, [], [], {}
        return metrics

    def _schedule(self) -> dict[str, Any]:
        return {"capture": self.capture, "interval": self.interval, "observe": self.observe, "horizon": self.horizon}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "snaps": self.snaps, "origin": self.origin, "done": self.done, **self._schedule()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        changed = {k: (state.get(k), v) for k, v in self._schedule().items() if state.get(k) != v}
        if changed and not state["done"]:  # the snapshots taken so far would not fit the new schedule
            raise ConfigError(f"{self.prefix}: the checkpoint's snapshots were taken with "
                              + ", ".join(f"{k}={old} (this run: {new})" for k, (old, new) in changed.items())
                              + ": keep them, or pass --no-resume")
        self.steps, self.snaps, self.origin, self.done = state["steps"], state["snaps"], state["origin"], state["done"]


def accuracy(result: dict[str, Any]) -> float:
    """The headline number of an evaluation: greedy accuracy (pass@1 when only samples were drawn)."""
    for key in ("greedy_accuracy", "sample_accuracy"):
        if isinstance(result.get(key), float):
            return result[key]
    return float("nan")
