"""Built-in rewards: correctness from a verifier's facts, a format check, and a length penalty (GroupRank's
reward is in rewards/ranking.py, registered on import here)."""
from __future__ import annotations

import re
from typing import Any

from rewards import ranking  # noqa: F401  # registers "grouprank"
from rewards.registry import REWARDS


@REWARDS.register("correctness")
def correctness(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    verifier: str = "math",
    **kwargs: Any,
) -> list[float]:
    """1.0 if ``facts[i][verifier]["correct"]`` else 0.0; NaN where that verifier failed or has no facts."""
    if facts and all(verifier not in f for f in facts):
        # Every row missing is a misconfigured name, not a run of failures: say so.
        have = sorted({name for f in facts for name in f})
        raise ValueError(f"no facts from verifier '{verifier}' (verifiers that ran: {have})")
    values = []
    for f in facts:
        verdict = f.get(verifier)
        if verdict is None or "error" in verdict:
            values.append(float("nan"))
        elif "correct" not in verdict:
            raise ValueError(f"verifier '{verifier}' does not judge correctness (its facts: {verdict})")
        else:
            values.append(1.0 if verdict["correct"] else 0.0)
    return values


@REWARDS.register("format")
def format_reward(
    prompts: list[str], completions: list[str], facts: list[dict[str, dict[str, Any]]], pattern: str, **kwargs: Any
) -> list[float]:
    """1.0 if ``re.search(pattern, completion)`` else 0.0.

    ``pattern`` is required: the right format depends on the prompt template. Use inline flags
    such as ``(?s)`` for ``re`` options.
    """
    compiled = re.compile(pattern)
    return [1.0 if compiled.search(c) else 0.0 for c in completions]


@REWARDS.register("length_penalty")
def length_penalty(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    target_length: int,
    scale: float = 1.0,
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """``-scale * max(0, L - target_length) / target_length``.

    L counts tokens (``completion_ids``) when given, else characters.
    """
    if target_length <= 0:
        raise ValueError(f"target_length must be > 0, got {target_length}")
    lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [len(c) for c in completions]
    return [-scale * max(0, n - target_length) / target_length for n in lengths]


@REWARDS.register("conciseness")
def conciseness(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    max_length: int,
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """``1 - min(L, max_length) / max_length`` in [0, 1]: shorter is better, by every token saved.

    L counts tokens (``completion_ids``, the EOS included) when given, else characters. Lu et al. (2025)
    give 1 when L is below the running mean length of every training response so far; a fixed scale
    keeps the reward a function of the completion alone, so evaluation can report it too.
    """
    if max_length <= 0:
        raise ValueError(f"max_length must be > 0, got {max_length}")
    lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [len(c) for c in completions]
    return [1.0 - min(n, max_length) / max_length for n in lengths]
