"""VerifierRunner: every (completion, verifier) item in worker processes, each under a wall-clock timeout."""
from __future__ import annotations

import collections
import logging
import math
import multiprocessing
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from verifiers.registry import VerifierSpec, absolute_spec, resolve_verifiers
from verifiers.worker import Item, call_verifier, worker_main

logger = logging.getLogger("rlpost.verifiers")

_LOGGED_FAILURES_PER_RUN = 5  # per verifier; the rest are only counted (and summarised in one line)

# What one item came to: ("ok", facts), ("error", message) or ("timeout", message).
_Result = tuple[str, Any]


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    started_at: float
    ready: bool = False
    # Indices of the items sent and not yet answered; chunk[0] is the one in flight.
    chunk: collections.deque[int] = field(default_factory=collections.deque)
    item_started: float = 0.0  # when chunk[0] started: the chunk's send or the previous result's arrival


def _zero_counts(names: list[str]) -> dict[str, dict[str, int]]:
    return {name: {"calls": 0, "errors": 0, "timeouts": 0} for name in names}


def _kill(worker: _Worker) -> None:
    worker.process.kill()
    worker.process.join()
    worker.conn.close()


def _stop_workers(workers: list[_Worker | None], graceful: bool = True) -> None:
    """Stop every worker in ``workers`` (in place): ask idle ones to exit, kill whatever is left."""
    live = [w for w in workers if w is not None]
    if graceful:
        for w in live:
            try:
                w.conn.send(None)
            except OSError:
                pass
    for w in live:
        if graceful:
            w.process.join(timeout=2.0)
        if w.process.is_alive():
            w.process.kill()
        w.process.join()
        w.conn.close()
    workers[:] = [None] * len(workers)


class VerifierRunner:
    """Runs verifier specs ``(name, fn_spec, kwargs)`` on completions in a pool of worker processes.

    Every (completion, verifier) item gets ``timeout_s`` of wall-clock time. A hung item's worker
    is killed, the item's facts become ``{"error": "timeout after 5.0s"}``, a fresh worker starts
    and the rest carry on; a verifier that raises gives ``{"error": "ValueError: message"}``.
    Failures are counted (``stats()``, ``last_run_stats()``) and logged on "rlpost.verifiers",
    never turned into ``correct: False``.

    Workers are ``spawn``-ed (safe when the parent holds torch threads or Ray), started lazily by
    the first ``run``, kept across runs, and resolve the specs once each, so plug-ins defined in
    user files work. As with any ``spawn``, the parent's main script must guard its entry point with
    ``if __name__ == "__main__"``. Workers are daemon processes, so a verifier cannot start
    processes of its own. ``num_workers=0`` runs every item inline in the calling process, with
    no timeout enforced: for debugging only.
    """

    def __init__(
        self,
        specs: list[VerifierSpec],
        timeout_s: float = 5.0,
        num_workers: int = 1,
        *,
        start_timeout_s: float = 120.0,
        max_chunk_size: int = 16,
    ) -> None:
        if timeout_s <= 0 or start_timeout_s <= 0:
            raise ValueError(f"timeouts must be > 0, got timeout_s={timeout_s}, start_timeout_s={start_timeout_s}")
        if num_workers < 0 or max_chunk_size < 1:
            raise ValueError(f"need num_workers >= 0 and max_chunk_size >= 1, got {num_workers}, {max_chunk_size}")
        self._specs: list[VerifierSpec] = [
            (name, absolute_spec(fn_spec), dict(kwargs or {})) for name, fn_spec, kwargs in specs
        ]
        # Resolved here to fail fast on a bad spec; workers resolve their own copies.
        self._fns = resolve_verifiers(self._specs)
        self.names = [name for name, _, _ in self._specs]
        self.timeout_s = float(timeout_s)
        self.num_workers = num_workers
        self.start_timeout_s = float(start_timeout_s)
        self.max_chunk_size = max_chunk_size
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * num_workers
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers, False)
        self._totals = _zero_counts(self.names)
        self._last = _zero_counts(self.names)

    # ------------------------------------------------------------------ public API

    def run(self, completions: list[str], records: list[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
        """Every verifier's facts per completion, ``[{verifier_name: facts}, ...]``, aligned with ``completions``."""
        if len(completions) != len(records):
            raise ValueError(f"{len(completions)} completions but {len(records)} records")
        n_specs = len(self._specs)
        # Completion-major, so a chunk repeats a record and pickle sends it once.
        items: list[Item] = [(j, c, r) for c, r in zip(completions, records) for j in range(n_specs)]
        results: list[_Result | None] = [None] * len(items)
        if self.num_workers == 0:
            for k, (j, completion, record) in enumerate(items):
                ok, payload = call_verifier(self._fns[j], completion, record, self._specs[j][2])
                results[k] = ("ok" if ok else "error", payload)
        elif items:
            try:
                self._run_pool(items, results)
            except BaseException:
                # Workers may hold half-done chunks; start clean next time.
                _stop_workers(self._workers, graceful=False)
                raise
        return self._collate(results, len(completions))

    def stats(self) -> dict[str, dict[str, int]]:
        """Cumulative ``{"calls", "errors", "timeouts"}`` per verifier; errors exclude timeouts."""
        return {name: dict(counts) for name, counts in self._totals.items()}

    def last_run_stats(self) -> dict[str, dict[str, int]]:
        """``stats()`` for the most recent ``run`` only."""
        return {name: dict(counts) for name, counts in self._last.items()}

    def close(self) -> None:
        """Stop the workers; a later ``run`` starts new ones."""
        _stop_workers(self._workers)

    def __enter__(self) -> VerifierRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the pool

    def _spawn(self, slot: int) -> _Worker:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(child_conn, self._specs), name=f"rlpost-verifier-{slot}", daemon=True
        )
        process.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        return _Worker(process, parent_conn, started_at=time.monotonic())

    def _run_pool(self, items: list[Item], results: list[_Result | None]) -> None:
        for slot, worker in enumerate(self._workers):
            if worker is None or worker.process.exitcode is not None:
                if worker is not None:
                    worker.conn.close()
                self._workers[slot] = self._spawn(slot)
        pending = collections.deque(range(len(items)))
        while pending or any(w is not None and w.chunk for w in self._workers):
            for slot in range(len(self._workers)):
                if pending and self._worker(slot).ready and not self._worker(slot).chunk:
                    self._send_chunk(slot, items, pending)
            waitables: list[Any] = []
            for w in self._workers:
                if w is not None:
                    waitables += [w.conn, w.process.sentinel]
            wait(waitables, timeout=self._time_to_next_deadline())
            for slot in range(len(self._workers)):
                self._collect(slot, pending, results)
            self._enforce_deadlines(pending, results)

    def _worker(self, slot: int) -> _Worker:
        worker = self._workers[slot]
        assert worker is not None
        return worker

    def _send_chunk(self, slot: int, items: list[Item], pending: collections.deque[int]) -> None:
        worker = self._worker(slot)
        # Small chunks balance the load and bound what a timeout sends again.
        size = min(self.max_chunk_size, math.ceil(len(pending) / len(self._workers)), len(pending))
        chunk = [pending.popleft() for _ in range(size)]
        try:
            worker.conn.send([items[k] for k in chunk])
        except OSError:  # the worker died while idle; nothing of this chunk ran
            pending.extendleft(reversed(chunk))
            _kill(worker)
            self._workers[slot] = self._spawn(slot)
            return
        worker.chunk = collections.deque(chunk)
        worker.item_started = time.monotonic()

    def _time_to_next_deadline(self) -> float | None:
        deadlines = []
        for w in self._workers:
            if w is None:
                continue
            if not w.ready:
                deadlines.append(w.started_at + self.start_timeout_s)
            elif w.chunk:
                deadlines.append(w.item_started + self.timeout_s)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _collect(self, slot: int, pending: collections.deque[int], results: list[_Result | None]) -> None:
        """Read whatever the worker has sent; handle its death if it died."""
        worker = self._worker(slot)
        # Checked before reading: a worker that exits after writing leaves its results in the pipe.
        died = worker.process.exitcode is not None
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if not worker.ready:
                    if message[0] != "ready":
                        _kill(worker)
                        raise RuntimeError(f"verifier worker failed to start:\n{message[1]}")
                    worker.ready = True
                    continue
                ok, payload = message
                results[worker.chunk.popleft()] = ("ok" if ok else "error", payload)
                worker.item_started = time.monotonic()
        except (EOFError, OSError):
            died = True
        if not died:
            return
        worker.process.join(timeout=5.0)
        code = worker.process.exitcode
        _kill(worker)
        if not worker.ready:
            raise RuntimeError(f"verifier worker exited during start-up (exit code {code})")
        if worker.chunk:
            results[worker.chunk.popleft()] = ("error", f"worker died (exit code {code})")
            pending.extendleft(reversed(worker.chunk))
        self._workers[slot] = self._spawn(slot)

    def _enforce_deadlines(self, pending: collections.deque[int], results: list[_Result | None]) -> None:
        now = time.monotonic()
        for slot, worker in enumerate(self._workers):
            if worker is None:
                continue
            if not worker.ready and now - worker.started_at > self.start_timeout_s:
                _kill(worker)
                raise RuntimeError(f"verifier worker did not start within {self.start_timeout_s}s")
            if worker.ready and worker.chunk and now - worker.item_started >= self.timeout_s:
                _kill(worker)
                results[worker.chunk.popleft()] = ("timeout", f"timeout after {self.timeout_s}s")
                pending.extendleft(reversed(worker.chunk))
                self._workers[slot] = self._spawn(slot)

    # ------------------------------------------------------------------ results and counters

    def _collate(self, results: list[_Result | None], n_completions: int) -> list[dict[str, dict[str, Any]]]:
        run_counts = _zero_counts(self.names)
        facts: list[dict[str, dict[str, Any]]] = [{} for _ in range(n_completions)]
        logged: collections.Counter[str] = collections.Counter()
        for k, result in enumerate(results):
            assert result is not None
            i, j = divmod(k, len(self.names))
            name = self.names[j]
            status, payload = result
            counts = run_counts[name]
            counts["calls"] += 1
            if status == "ok":
                facts[i][name] = payload
                continue
            counts["errors" if status == "error" else "timeouts"] += 1
            facts[i][name] = {"error": payload}
            if logged[name] < _LOGGED_FAILURES_PER_RUN:
                logged[name] += 1
                logger.warning("verifier '%s' failed on completion %d: %s", name, i, payload)
        for name, counts in run_counts.items():
            unlogged = counts["errors"] + counts["timeouts"] - logged[name]
            if unlogged > 0:
                logger.warning("verifier '%s': %d more failures in this run not logged", name, unlogged)
            for key, value in counts.items():
                self._totals[name][key] += value
        self._last = run_counts
        return facts
