"""NExt as a callback: after observing the LoRA trajectory, a learned predictor extends it (spec part B)."""
from __future__ import annotations

from typing import Callable

import torch

from rlpost.algos.next import fit_predictor, predict_updates, trajectory, training_rows
from rlpost.callbacks.base import CALLBACKS
from rlpost.callbacks.trajectory import Extrapolation


@CALLBACKS.register("next")
class NExt(Extrapolation):
    """Snapshots every ``interval`` steps up to ``observe``; predictors per vector length learn the
    ``horizon``-step movement of the rank-``rank`` components from their global and local deltas;
    the jump adds ``coef`` times the predicted movement. ``predictor`` / ``sigma_predictor``: ``mlp``
    (the paper's network, L1, AdamW ``lr`` cosine to ``min_lr_ratio``, ``epochs`` full-batch steps)
    or ``affine`` (closed-form least squares). The sigma group defaults to affine: the paper's
    network has one ReLU unit per branch there and collapses to a constant (spec B.3.2)."""

    prefix = "next"

    def __init__(self, interval: int = 10, observe: int = 150, horizon: int = 50, coef: float | list[float] = 3.0,
                 capture: str = "auto", rank: int = 1, eval_jump: bool = True, select_prompts: int = 200,
                 predictor: str = "mlp", sigma_predictor: str = "affine", width: int = 256, epochs: int = 1000,
                 lr: float = 2e-5, min_lr_ratio: float = 0.1, clamp_negative: bool = False, seed: int = 0) -> None:
        super().__init__(interval, observe, horizon, coef, capture, rank, eval_jump, select_prompts)
        for key, kind in (("predictor", predictor), ("sigma_predictor", sigma_predictor)):
            if kind not in ("mlp", "affine"):
                raise ValueError(f"{key} must be mlp or affine, got {kind!r}")
        self.kinds = {"vector": predictor, "sigma": sigma_predictor}
        self.train = {"width": width, "epochs": epochs, "lr": lr, "min_lr_ratio": min_lr_ratio, "seed": seed}
        self.clamp_negative = clamp_negative

    def predict(self) -> tuple[Callable[[float], dict[str, torch.Tensor]], dict[str, float]]:
        points = trajectory(self.steps, self.snaps, self.origin, self.horizon, self.rank)
        fits = {
            key: fit_predictor(rows, kind=self.kinds["sigma" if key[0] == "sigma" else "vector"], **self.train)
            for key, rows in training_rows(points, self.rank).items()
        }
        updates, found = predict_updates(points, fits, self.rank, self.clamp_negative)  # none when nothing moved
        found.update({
            "groups": float(len(fits)),
            "predictor_loss": sum(f.loss for f in fits.values()),
            "predictor_loss_first": sum(f.first_loss for f in fits.values()),
            "active_units_min": min((f.active for f in fits.values()), default=1.0),
            "predictor_retries": float(sum(f.retries for f in fits.values())),
        })
        return (lambda c: {n: c * u for n, u in updates.items()}), found
