"""The linear baseline NExt compares with (AlphaRL-style, spec B.6), in the same place and with the same coef."""
from __future__ import annotations

from typing import Callable

import torch

from rlpost.algos.next import linear_updates
from rlpost.callbacks.base import CALLBACKS
from rlpost.callbacks.trajectory import Extrapolation


@CALLBACKS.register("linear_extrapolation")
class LinearExtrapolation(Extrapolation):
    """Per matrix, the rank-1 direction of everything learned by ``observe``, its coefficient fitted
    by a line over the snapshots, and the jump to the line's value ``coef * horizon`` steps ahead."""

    prefix = "linear"

    def predict(self) -> tuple[Callable[[float], dict[str, torch.Tensor]], dict[str, float]]:
        return (lambda c: linear_updates(self.steps, self.snaps, self.origin, ahead=c * self.horizon)), {}
