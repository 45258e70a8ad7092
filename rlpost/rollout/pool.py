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
from typing import Any, Callable, Sequence

from rlpost.actors import ActorDiedError
from rlpost.types import Completion, Request, SamplingParams

log = logging.getLogger("rlpost.rollout")


def worker_of(key: Any, workers: int) -> int:
    """The worker a request goes to: by its key, so the same prompt goes to the same worker every round."""
    if isinstance(key, int):
        return key % workers
    return zlib.crc32(repr(key).encode()) % workers


class RolloutPool:
    """The rollout handle over one or more worker handles (Ray or in-process)."""

    def __init__(self, workers: Sequence[Any]) -> None:
        if not workers:
            raise ValueError("a rollout pool needs at least one worker")
        self.workers = list(workers)

    # ------------------------------------------------------------------ the handle interface

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    @property
    def on_restart(self) -> Callable[[], Any] | None:
        return self.workers[0].on_restart if hasattr(self.workers[0], "on_restart") else None

    @on_restart.setter
    def on_restart(self, fn: Callable[[], Any] | None) -> None:
        for w in self.workers:
            w.on_restart = fn

    def call(self, name: str, *args, **kwargs) -> Any:
        if len(self.workers) == 1:  # its handle retries a call across a restart itself
            return self.workers[0].call(name, *args, **kwargs)
        return self.result(self.submit(name, *args, **kwargs), name)

    def submit(self, name: str, *args, **kwargs) -> Any:
        """Send the call's shares to the workers now; ``result`` gathers and combines them."""
        if len(self.workers) == 1:
            return self.workers[0].submit(name, *args, **kwargs)
        if name not in _COMBINE:
            raise AttributeError(f"rollout pool: no rule to spread '{name}' over {len(self.workers)} workers")
        if name == "generate":
            requests, sampling = args
            shares: list[list[int]] = [[] for _ in self.workers]
            for i, req in enumerate(requests):
                shares[worker_of(req.key, len(self.workers))].append(i)
            calls = [(w, ([requests[i] for i in idx], sampling), {}) for w, idx in zip(self.workers, shares) if idx]
            return _Pending(name, self._send(name, calls), (requests, shares, sampling))
        if name == "load_state_dict":
            states = worker_states(args[0], len(self.workers))
            return _Pending(name, self._send(name, [(w, (st,), {}) for w, st in zip(self.workers, states)]))
        return _Pending(name, self._send(name, [(w, args, kwargs) for w in self.workers]))

    def result(self, future: Any, name: str = "a call") -> Any:
        if not isinstance(future, _Pending):
            return self.workers[0].result(future, name)
        outs = [_gather(w, f, future.name, a, kw) for w, a, kw, f in future.sent]
        return _COMBINE[future.name](outs, future.context)

    def each(self, name: str, *args, **kwargs) -> list[Any]:
        """The same call on every worker at once, one result per worker (parity checks per worker)."""
        sent = self._send(name, [(w, args, kwargs) for w in self.workers])
        return [_gather(w, f, name, a, kw) for w, a, kw, f in sent]

    def kill(self, restart: bool = False) -> None:
        for w in self.workers:
            w.kill(restart) if restart else w.kill()

    @staticmethod
    def _send(name: str, calls: list[tuple[Any, tuple, dict]]) -> list[tuple[Any, tuple, dict, Any]]:
        return [(w, a, kw, w.submit(name, *a, **kw)) for w, a, kw in calls]


class _Pending:
    """A pooled call in flight: per worker (handle, args, kwargs, future), and what combining needs."""

    def __init__(self, name: str, sent: list, context: Any = None) -> None:
        self.name, self.sent, self.context = name, sent, context


def _gather(worker: Any, future: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """One worker's result; a worker that died is restarted by Ray and asked again (its share only)."""
    try:
        return worker.result(future, name)
    except ActorDiedError as e:
        if not hasattr(worker, "restarted"):
            raise
        worker.restarted(e)  # re-raises when Ray may not restart it (again)
        return worker.call(name, *args, **kwargs)


def in_request_order(outs: list[list[Completion]], context: tuple) -> list[Completion]:
    """Completions from the workers' shares back in request order (all samples of request 0 first)."""
    requests, shares, sampling = context
    per_request: list[list[Completion]] = [[] for _ in requests]
    for idx, out in zip([s for s in shares if s], outs):
        start = 0
        for i in idx:
            n = requests[i].n if requests[i].n is not None else sampling.n
            per_request[i], start = out[start : start + n], start + n
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
