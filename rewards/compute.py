"""Compute the reward matrix ``[B, K]`` for a batch; a failing reward becomes a NaN column and an error."""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlpost.registry import resolve_specs
from rewards.registry import REWARDS, RewardFn

logger = logging.getLogger("rlpost.rewards")

RewardSpec = tuple[str, str, dict[str, Any]]  # (name, registered name or 'module:fn' / 'file.py:fn', kwargs)

# Passed to every reward by compute_rewards; neither reward kwargs nor dataset columns may use them.
RESERVED = ("prompts", "completions", "facts", "completion_ids")


@dataclass
class RewardResult:
    values: np.ndarray  # float64 [B, K]; NaN = unknown
    names: list[str]  # the K reward names, in column order
    errors: dict[str, str]  # reward name -> why its column is all NaN
    nan_counts: dict[str, int]  # reward name -> NaNs in its column


def resolve_rewards(specs: list[RewardSpec]) -> list[RewardFn]:
    """Resolve every spec to its function, checking names are unique and kwargs are accepted."""
    for name, _, kwargs in specs:
        clash = sorted(set(kwargs or {}) & set(RESERVED))
        if clash:
            raise ValueError(f"reward '{name}': kwargs may not set {clash}, compute_rewards passes them")
    return resolve_specs(REWARDS, specs, ([], [], []), "fn(prompts, completions, facts, **kwargs)", partial=True)


LOCALITIES = ("row", "group", "cohort", "batch")


def reward_locality(fn: RewardFn) -> str:
    """What a reward looks across: its ``locality`` attribute, ``"row"`` when it has none."""
    locality = getattr(fn, "locality", "row")
    if locality not in LOCALITIES:
        raise ValueError(f"locality must be one of {', '.join(LOCALITIES)}, got {locality!r}")
    return locality


def _as_column(output: Any, size: int) -> np.ndarray:
    """A reward's return value as a float64 column; ``None`` entries mean unknown (NaN), as in TRL."""
    if hasattr(output, "tolist"):  # numpy array or torch tensor
        output = output.tolist()
    if isinstance(output, (str, bytes, dict)) or not hasattr(output, "__len__"):
        raise TypeError(f"returned {type(output).__name__}, expected a list of {size} floats")
    if len(output) != size:
        raise ValueError(f"returned {len(output)} values for {size} completions")
    column = np.empty(size, dtype=np.float64)
    for i, v in enumerate(output):
        if v is None:
            column[i] = np.nan
        elif isinstance(v, numbers.Real):
            column[i] = float(v)
        else:
            raise TypeError(f"returned a non-number at index {i}: {v!r}")
    if np.isinf(column).any():
        raise ValueError(f"returned an infinite value at index {int(np.flatnonzero(np.isinf(column))[0])}")
    return column


def compute_rewards(
    specs: list[RewardSpec],
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    columns: dict[str, list[Any]],
    completion_ids: list[list[int]] | None = None,
    fns: list[RewardFn] | None = None,
) -> RewardResult:
    """Call every reward as ``fn(prompts, completions, facts, **columns, completion_ids=..., **kwargs)``.

    A reward's own kwargs win over a dataset column of the same name. A reward that raises, returns
    the wrong length or returns non-numbers does not stop the others: its column is NaN and the
    reason is in ``errors`` (and logged on "rlpost.rewards"). ``fns`` are the already resolved
    functions (from ``resolve_rewards(specs)``), so a training loop resolves them once.
    """
    size = len(completions)
    lengths = {"prompts": len(prompts), "facts": len(facts), **{f"column '{k}'": len(v) for k, v in columns.items()}}
    if completion_ids is not None:
        lengths["completion_ids"] = len(completion_ids)
    wrong = {k: n for k, n in lengths.items() if n != size}
    if wrong:
        raise ValueError(f"{size} completions but lengths {wrong}")
    clash = sorted(set(columns) & set(RESERVED))
    if clash:
        raise ValueError(f"dataset columns {clash} clash with the arguments every reward gets")
    fns = resolve_rewards(specs) if fns is None else fns
    names = [name for name, _, _ in specs]
    values = np.full((size, len(specs)), np.nan, dtype=np.float64)
    errors: dict[str, str] = {}
    for k, ((name, _, kwargs), fn) in enumerate(zip(specs, fns)):
        call_kwargs = {**columns, "completion_ids": completion_ids, **(kwargs or {})}
        try:
            values[:, k] = _as_column(fn(prompts, completions, facts, **call_kwargs), size)
        except Exception as e:
            errors[name] = f"{type(e).__name__}: {e}"
            logger.warning("reward '%s' failed, its column is NaN: %s", name, errors[name])
    nan_counts = {name: int(np.isnan(values[:, k]).sum()) for k, name in enumerate(names)}
    return RewardResult(values=values, names=names, errors=errors, nan_counts=nan_counts)
