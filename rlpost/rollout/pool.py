"""RolloutPool: N rollout workers behind the one handle the controller talks to.

``generate`` sends each request (one prompt and its n samples) whole to one worker, chosen by the
request's key, so a prompt's samples share one engine's prefix cache and a sampler's later rounds for
that prompt land where its first round did. Workers run their shares at once; the completions come
back in request order, as from one engine. A weight sync is one export fanned out: every worker
loads the same object-store payload. A worker that dies is restarted by Ray (``RayHandle``) and only
its share is asked again, so no prompt is skipped or generated twice.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any, Callable

from rlpost.actors import HandleGroup
from rlpost.types import Completion

log = logging.getLogger("rlpost.rollout")


def worker_of(key: Any, workers: int) -> int:
    """The worker a request goes to: by its key, so the same prompt goes to the same worker every round."""
    if isinstance(key, int):
        return key % workers
    return zlib.crc32(repr(key).encode()) % workers


class RolloutPool(HandleGroup):
    """The rollout handle over one or more worker handles (Ray or in-process)."""

    kind = "rollout pool"

    @property
    def workers(self) -> list[Any]:
        return self.members

    def plan(self, name: str, args: tuple, kwargs: dict) -> tuple[list[tuple[Any, tuple, dict]], Any]:
        if name not in _COMBINE:
            raise AttributeError(f"rollout pool: no rule to spread '{name}' over {len(self.members)} workers")
        if name == "generate":
            requests, sampling = args
            shares: list[list[int]] = [[] for _ in self.members]
            for i, req in enumerate(requests):
                shares[worker_of(req.key, len(self.members))].append(i)
            calls = [(w, ([requests[i] for i in idx], sampling), {}) for w, idx in zip(self.members, shares) if idx]
            return calls, (requests, shares, sampling)
        if name == "load_state_dict":
            return [(w, (st,), {}) for w, st in zip(self.members, worker_states(args[0], len(self.members)))], None
        return [(w, args, kwargs) for w in self.members], None

    def combine(self, name: str, outs: list[Any], context: Any) -> Any:
        return _COMBINE[name](outs, context)


def in_request_order(outs: list[list[Completion]], context: tuple) -> list[Completion]:
    """Completions from the workers' shares back in request order (all samples of request 0 first)."""
    requests, shares, sampling = context
    per_request: list[list[Completion]] = [[] for _ in requests]
    for (worker, idx), out in zip([(w, s) for w, s in enumerate(shares) if s], outs):
        start = 0
        for i in idx:
            n = requests[i].n if requests[i].n is not None else sampling.n
            per_request[i], start = out[start : start + n], start + n
            for c in per_request[i]:
                c.worker = worker
    return [c for cs in per_request for c in cs]


def worker_states(state: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """Worker i's saved state; a checkpoint from another worker count (or from before pools) gives its
    states out in turn: the run resumes, but sampling differs from the uninterrupted run's."""
    states = state["workers"] if "workers" in state else [state]
    if len(states) != workers:
        log.warning("the checkpoint holds %d rollout worker state(s), this run has %d workers: sampling after the "
                    "resume differs from the uninterrupted run", len(states), workers)
    return [states[i % len(states)] for i in range(workers)]


def merge_applied(applied: list[dict[str, Any]], _: Any = None) -> dict[str, Any]:
    """One sync's result over the workers: the version they all reached, bytes moved to all, the slowest apply."""
    versions = {a["version"] for a in applied}
    if len(versions) != 1:
        raise RuntimeError(f"rollout workers disagree on the policy version after a sync: {sorted(versions)}")
    return {"version": versions.pop(), "bytes": sum(a["bytes"] for a in applied), "apply_s": max(a["apply_s"] for a in applied),
            "workers": len(applied)}


# How the workers' results of each pooled call become one (with the call's context).
_COMBINE: dict[str, Callable[[list[Any], Any], Any]] = {
    "generate": in_request_order,
    "load_weights": merge_applied,
    "state_dict": lambda outs, _: {"workers": outs},
    "load_state_dict": lambda outs, _: None,
    "ready": lambda outs, _: all(outs),
    "logprobs": lambda outs, _: outs[0],  # every worker should agree; parity checks use each()
}
