"""An endless, resumable stream of prompt records shuffled afresh each epoch."""
from __future__ import annotations

from typing import Any

import numpy as np

from rlpost.data.errors import DataError


class PromptDataset:
    """Yields ``(index, record)`` batches over epochs; the order depends only on (seed, epoch)."""

    def __init__(self, records: list[dict[str, Any]], seed: int, shuffle: bool = True) -> None:
        if not records:
            raise DataError("PromptDataset: no records to iterate over")
        self.records = records
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order = self._epoch_order(0)

    def __len__(self) -> int:
        return len(self.records)

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.records)))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.records)).tolist()

    def next_batch(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The next ``n`` records; a batch may span the end of one epoch and the start of the next."""
        if n < 1:
            raise DataError(f"PromptDataset.next_batch: n must be >= 1, got {n}")
        batch = []
        while len(batch) < n:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order(self.epoch)
            idx = self._order[self.position]
            self.position += 1
            batch.append((idx, self.records[idx]))
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_records": len(self.records),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the seed, shuffle flag and record count must match the saved run."""
        for key, mine in (("seed", self.seed), ("shuffle", self.shuffle), ("num_records", len(self.records))):
            if key in state and state[key] != mine:
                raise DataError(f"PromptDataset state has {key}={state[key]!r} but this dataset has {key}={mine!r}")
        if not 0 <= state["position"] <= len(self.records):
            raise DataError(f"PromptDataset state position {state['position']} is outside 0..{len(self.records)}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._epoch_order(self.epoch)
