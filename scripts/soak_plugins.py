"""Chaos for the soak test (scripts/soak.py) and the self-healing tests: a verifier that fails and
hangs at random, a reward that raises at random, callbacks that kill the rollout worker or the
learner the way a cluster does, and one that records where the prompt stream is after every step.

Plug-ins by path: ``fn: scripts/soak_plugins.py:flaky_verifier``.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

_rng = random.Random()


def flaky_verifier(completion: str, record: dict[str, Any], fail: float = 0.05, hang: float = 0.005) -> dict[str, Any]:
    """The answer check of ``exact_numeric``, but raising with probability ``fail`` and hanging (past any
    timeout) with probability ``hang``."""
    from verifiers.numeric import exact_numeric

    draw = _rng.random()
    if draw < hang:
        time.sleep(3600)
    if draw < hang + fail:
        raise RuntimeError("flaky verifier: injected failure")
    return exact_numeric(completion, record, whole=True)


def flaky_reward(prompts: list[str], completions: list[str], facts: list[dict], p: float = 0.1, **kwargs: Any) -> list[float]:
    """1.0 for a completion that is only digits, but the whole call raises with probability ``p``."""
    if _rng.random() < p:
        raise RuntimeError("flaky reward: injected failure")
    return [1.0 if c.strip().isdigit() else 0.0 for c in completions]


def kill_rollout(ctx, at: int = 0, wait: bool = True, worker: int = 0) -> None:
    """After step ``at``, kill rollout worker ``worker`` as a crash would (Ray restarts it). With ``wait``, block
    until the new process is up, so the next call reaches it without any error (only its incarnation tells)."""
    if ctx.step != at:
        return
    import ray

    handle = ctx._run.rollout.workers[worker]
    handle.kill(restart=True)
    while wait:
        try:
            incarnation, _ = ray.get(handle.actor.invoke.remote("ready"))
            if incarnation != handle.incarnation:
                return
        except ray.exceptions.RayActorError:  # still restarting
            pass
        time.sleep(0.2)


def kill_learner(ctx, at: int, marker: str, rank: int | None = None) -> None:
    """After step ``at``, kill the learner actor (or one ``rank`` of a learner group), once per ``marker`` file
    (the resumed run passes step ``at`` again)."""
    if ctx.step == at and not Path(marker).exists():
        Path(marker).write_text("killed")
        learner = ctx._run.learner
        (learner.members[rank] if rank is not None else learner).kill()


def record_stream(ctx, path: str) -> None:
    """Append the step and the prompt stream's position after it (a resumed run appends again)."""
    with open(path, "a") as f:
        f.write(json.dumps({"step": ctx.step, **ctx._run.dataset.state_dict()}) + "\n")
