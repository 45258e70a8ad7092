"""An endless, resumable stream of prompt records shuffled afresh each epoch, optionally in cohorts (all
records sharing a column's value, e.g. a query's candidates, kept together in one step)."""
from __future__ import annotations

from typing import Any

import numpy as np

from rlpost.data.errors import DataError


class PromptDataset:
    """Yields ``(index, record)`` batches over epochs; the order depends only on (seed, epoch).

    With ``cohort`` (a column), the units shuffled and drawn are cohorts, the records sharing that
    column's value in first-seen order: a batch holds whole cohorts only."""

    def __init__(self, records: list[dict[str, Any]], seed: int, shuffle: bool = True, cohort: str | None = None) -> None:
        if not records:
            raise DataError("PromptDataset: no records to iterate over")
        self.records = records
        self.seed = seed
        self.shuffle = shuffle
        self.cohort = cohort
        self.units = cohorts(records, cohort) if cohort else [[i] for i in range(len(records))]
        self.epoch = 0
        self.position = 0
        self._order = self._epoch_order(0)

    def __len__(self) -> int:
        return len(self.records)

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.units)))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.units)).tolist()

    def next_batch(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The next ``n`` records, or with cohorts the next whole cohorts while they fit in ``n`` records (at
        least one, none twice); a batch may span the end of one epoch and the start of the next."""
        if n < 1:
            raise DataError(f"PromptDataset.next_batch: n must be >= 1, got {n}")
        batch: list[tuple[int, dict[str, Any]]] = []
        taken: set[int] = set()
        while len(batch) < n:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order(self.epoch)
            u = self._order[self.position]
            if batch and self.cohort and (len(batch) + len(self.units[u]) > n or u in taken):
                break  # whole cohorts, each once per batch
            self.position += 1
            taken.add(u)
            batch.extend((i, self.records[i]) for i in self.units[u])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_records": len(self.records),
            "cohort": self.cohort,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the seed, shuffle flag and record count must match the saved run."""
        for key, mine in (("seed", self.seed), ("shuffle", self.shuffle), ("num_records", len(self.records)), ("cohort", self.cohort)):
            if key in state and state[key] != mine:
                raise DataError(f"PromptDataset state has {key}={state[key]!r} but this dataset has {key}={mine!r}")
        if not 0 <= state["position"] <= len(self.units):
            raise DataError(f"PromptDataset state position {state['position']} is outside 0..{len(self.units)}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._epoch_order(self.epoch)


def cohorts(records: list[dict[str, Any]], column: str) -> list[list[int]]:
    """Record indices grouped by ``column``'s value, groups and members in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        if column not in r:
            raise DataError(f"data.cohort '{column}': record {i} has no such column (it has: {', '.join(r)})")
        groups.setdefault(r[column], []).append(i)
    return list(groups.values())
