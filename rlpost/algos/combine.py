"""Combine stages: the (shaped) objective vector of every row -> its scalar reward.

``fixed`` sums with constant weights. The dynamic ones (Lu et al. 2025, spec
dynamic_weighting_and_next.md part A) keep state that travels in checkpoints:

- ``hypervolume``: the preference weights stay, and the whole signal is multiplied by a meta-reward
  that grows when the newest policy pushes the validation Pareto front out (``after_step``);
- ``gradient``: the weights move each step toward objectives whose policy gradient is large and
  agrees with the others (one gradient per objective from the learner's ``objective_gradients``).

Weights default to the rewards' ``weight``; a ``weights: {reward: w}`` kwarg replaces them for the
training signal (samplers and ``reward/mean`` still read the rewards' own weights).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.algos.weighting import (
    add_to_front, exponentiated_update, hypervolume, influence, meta_reward, nondominated, oriented,
)
from rlpost.types import Batch

if TYPE_CHECKING:
    from rlpost.callbacks import CallbackContext

log = logging.getLogger("rlpost.combine")

# Validation keys besides the rewards' means that can be objectives of the hypervolume.
EVAL_KEYS = ("greedy_accuracy", "mean_length")


class Weighted:
    """Weights over the objectives: the ``weights`` kwarg, else the rewards' weights."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        if weights is not None:
            if not isinstance(weights, dict) or not weights:
                raise ValueError(f"weights must map reward names to numbers, got {weights!r}")
            self._check_values(weights, "weights")
        self.weights = weights

    @staticmethod
    def _check_values(weights: dict[str, float], where: str) -> None:
        bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0}
        if bad or not sum(weights.values()) > 0:
            raise ValueError(f"{where} must be finite and >= 0 with a positive sum, got {bad or weights}")

    def check(self, rewards: dict[str, float]) -> None:
        unknown = sorted(set(self.weights or {}) - set(rewards))
        if unknown:
            raise ValueError(f"weights name {unknown} but no reward produces them (rewards: {', '.join(rewards)})")

    def vector(self, batch: Batch) -> torch.Tensor:
        """[K] weights in the batch's objective order."""
        if self.weights is None:
            return batch.objective_weights
        return torch.tensor([float(self.weights.get(n, 0.0)) for n in batch.objective_names])


def weighted_rewards(batch: Batch, w: torch.Tensor) -> torch.Tensor:
    """[B] sum of the used (non-zero weight) objective columns; a row unknown in one of them leaves ``keep``."""
    used = w != 0
    values = batch.shaped[:, used]
    unknown = torch.isnan(values).any(dim=1)
    if unknown.any():
        batch.keep &= ~unknown
        batch.metrics["combine/unknown_rows"] = float(unknown.sum())
    return torch.nan_to_num(values, nan=0.0) @ w[used]


def weight_metrics(names: list[str], w: torch.Tensor) -> dict[str, float]:
    return {f"weights/{n}": float(v) for n, v in zip(names, w)}


@STAGES.register("fixed")
@stage("combine", locality="row")
class Fixed(Weighted):
    """Weighted sum with constant weights; zero-weight columns are ignored, unknown values there too."""

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        w = self.vector(batch)
        batch.rewards = weighted_rewards(batch, w)
        batch.metrics.update(weight_metrics(batch.objective_names, w))


class Simplex(Weighted):
    """Weights checked as preferences: non-negative with a positive sum (the rewards' too)."""

    def check(self, rewards: dict[str, float]) -> None:
        super().check(rewards)
        if self.weights is None:
            self._check_values(rewards, "the rewards' weights (rewards[].weight)")


@STAGES.register("hypervolume")
@stage("combine", locality="row")
class Hypervolume(Simplex):
    """Preference weights times a meta-reward ``rho``: after every step the policy is validated (greedy,
    the first ``prompts`` training prompts), and ``rho = base + gain * tanh(dHV)`` where dHV is the volume
    the new objective vector adds to the front of earlier ones, above the reference point (the
    starting policy's vector unless ``reference`` is given). ``rho`` is 1 at the first step.

    ``objectives`` are reward names (their mean on the validation completions) or ``greedy_accuracy``
    / ``mean_length``; default the rewards with non-zero weight. ``minimize`` names those where lower
    is better; ``scale`` divides each coordinate (raw units by default, as the paper).

    ``apply_to: reward`` multiplies the rewards (the paper); under a std-normalised estimator (grpo) that
    changes nothing, so ``apply_to: advantage`` multiplies the advantages instead.
    """

    def __init__(
        self, weights: dict[str, float] | None = None, objectives: list[str] | None = None, minimize: list[str] | None = None,
        reference: list[float] | None = None, scale: list[float] | None = None, prompts: int = 64,
        apply_to: str = "reward", base: float = 0.5, gain: float = 1.5,
    ) -> None:
        super().__init__(weights)
        if apply_to not in ("reward", "advantage"):
            raise ValueError(f"apply_to must be reward or advantage, got {apply_to!r}")
        if prompts < 1:
            raise ValueError(f"prompts must be >= 1, got {prompts}")
        if scale is not None and any(not s > 0 for s in scale):
            raise ValueError(f"scale must be positive, got {scale}")
        self.objectives, self.minimize = objectives, list(minimize or [])
        self.scale, self.prompts, self.apply_to, self.base, self.gain = scale, prompts, apply_to, base, gain
        self.uniform_reward_scale = apply_to == "reward"  # read by the pipeline's scale-invariance warning
        self.reference = None if reference is None else [float(x) for x in reference]
        self.front: list[list[float]] = []
        self.rho = 1.0

    def check(self, rewards: dict[str, float]) -> None:
        super().check(rewards)
        weights = self.weights or rewards
        if self.objectives is None:
            self.objectives = [n for n in rewards if weights.get(n, 0) != 0]
        allowed = list(rewards) + list(EVAL_KEYS)
        unknown = sorted(set(self.objectives) - set(allowed)) + sorted(set(self.minimize) - set(self.objectives))
        if unknown:
            raise ValueError(f"objectives / minimize name {unknown}, expected some of {', '.join(allowed)}")
        m = len(self.objectives)
        for key, value in (("reference", self.reference), ("scale", self.scale)):
            if value is not None and len(value) != m:
                raise ValueError(f"{key} has {len(value)} values for {m} objectives {self.objectives}")

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        w = self.vector(batch)
        rewards = weighted_rewards(batch, w)
        if self.apply_to == "reward":
            batch.rewards = self.rho * rewards
        else:
            batch.rewards, batch.advantage_scale = rewards, self.rho
        batch.metrics.update({**weight_metrics(batch.objective_names, w), "hv/rho": self.rho})

    # ------------------------------------------------------------ between steps (run as a callback)

    def _validate(self, ctx: CallbackContext) -> list[float]:
        result = ctx.validate(self.prompts)
        return [float(result[k if k in EVAL_KEYS else f"reward/{k}"]) for k in self.objectives]

    def _oriented(self, points: Any) -> np.ndarray:
        return oriented(points, [k not in self.minimize for k in self.objectives], self.scale)

    def on_start(self, ctx: CallbackContext) -> None:
        if self.reference is None:
            self.reference = self._validate(ctx)
            ctx.print("hypervolume reference (starting policy): " + ", ".join(f"{k} {v:.4g}" for k, v in zip(self.objectives, self.reference)))

    def after_step(self, ctx: CallbackContext) -> dict[str, float]:
        t0 = time.perf_counter()
        z = self._validate(ctx)
        ref = self._oriented(self.reference)
        front, delta = add_to_front(self._oriented(self.front), self._oriented(z), ref)
        if delta > 0:  # the same pruning, on the raw vectors the state keeps
            grown = self.front + [z]
            self.front = [p for p, keep in zip(grown, nondominated(self._oriented(grown))) if keep]
        self.rho = meta_reward(delta, self.base, self.gain)
        return {
            **{f"val/{k}": v for k, v in zip(self.objectives, z)},
            "hv/delta": delta, "hv/volume": hypervolume(front, ref), "hv/front_size": float(len(self.front)), "hv/rho_next": self.rho,
            "hv/seconds": time.perf_counter() - t0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "front": self.front, "rho": self.rho}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference, self.front, self.rho = state["reference"], state["front"], state["rho"]


@STAGES.register("gradient")
@stage("combine", locality="batch", needs=("learner",))
class Gradient(Simplex):
    """Weights moved by how each objective's policy gradient agrees with the others: per objective,
    its own advantages (the recipe's estimator), the policy loss's gradient at the current weights
    (clipped to ``clip``, default optim.grad_clip), restricted to the parameters whose names match
    ``params`` (a regex; default every trainable one); influence ``I_i = <g_i, sum_j g_j>``; every
    ``every`` steps ``w <- w * exp(lr * mean I / mu)``, renormalised (lr: the learner's at this step).
    The step's rewards use the new weights. ``floor`` keeps every weight at least that high.
    """

    def __init__(
        self, weights: dict[str, float] | None = None, mu: float = 1e-5, every: int = 1, params: str = "",
        clip: float | None = None, floor: float = 0.0,
    ) -> None:
        super().__init__(weights)
        if not mu > 0 or every < 1 or not 0 <= floor < 1 or (clip is not None and not clip > 0):
            raise ValueError(f"need mu > 0, every >= 1, 0 <= floor < 1 and clip > 0, got mu={mu}, every={every}, floor={floor}, clip={clip}")
        self.mu, self.every, self.params, self.clip, self.floor = mu, every, params, clip, floor
        self.current: dict[str, float] | None = None  # the weights now, by objective name
        self.summed: dict[str, float] = {}
        self.count = 0

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        if self.current is None:
            w0 = self.vector(batch)
            self.current = {n: float(v) / float(w0.sum()) for n, v in zip(batch.objective_names, w0) if v != 0}
        names = list(self.current)
        cols = [batch.objective_names.index(n) for n in names]
        w = torch.tensor([self.current[n] for n in names], dtype=torch.float64)
        rows = (batch.keep & ~torch.isnan(batch.shaped[:, cols]).any(dim=1)).nonzero().flatten()
        if rows.numel() == 0:  # nothing known to learn from: the weights stay
            batch.rewards = weighted_rewards(batch, self._full(batch))
            return
        advantages = [ctx.advantage(torch.nan_to_num(batch.shaped[:, c], nan=0.0))[rows].tolist() for c in cols]
        out = ctx.learner.call("objective_gradients", batch.train_batch(rows), advantages, self.params, self.clip)
        gram = torch.tensor(out["gram"], dtype=torch.float64)
        step_influence = influence(gram)
        metrics = {f"influence/{n}": float(v) for n, v in zip(names, step_influence)}
        if torch.isfinite(step_influence).all():
            for n, v in zip(names, step_influence.tolist()):
                self.summed[n] = self.summed.get(n, 0.0) + v
            self.count += 1
        else:
            log.warning("a non-finite objective gradient: the weights stay this step")
        if self.count >= self.every:
            mean = torch.tensor([self.summed[n] / self.count for n in names], dtype=torch.float64)
            w = exponentiated_update(w, mean, out["lr"] / self.mu)
            if self.floor:
                w = w.clamp(min=self.floor) / w.clamp(min=self.floor).sum()
            self.current, self.summed, self.count = dict(zip(names, w.tolist())), {}, 0
        full = self._full(batch)
        batch.rewards = weighted_rewards(batch, full)
        batch.metrics.update({
            **metrics, **weight_metrics(batch.objective_names, full), "combine/step_size": out["lr"] / self.mu,
            "time/objective_gradients": out["seconds"], "combine/gradient_bytes": float(out["bytes"]),
        })

    def _full(self, batch: Batch) -> torch.Tensor:
        """[K] the current weights in the batch's objective order (0 for objectives not weighed)."""
        return torch.tensor([self.current.get(n, 0.0) for n in batch.objective_names], dtype=torch.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "summed": self.summed, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current, self.summed, self.count = state["current"], state["summed"], state["count"]
