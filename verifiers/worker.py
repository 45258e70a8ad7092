"""The verifier worker process and the one-item call shared with inline mode."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

from verifiers.registry import VerifierFn, VerifierSpec, resolve_verifiers

# (True, facts) or (False, "ErrorType: message")
Outcome = tuple[bool, Any]
# (spec index, completion, record)
Item = tuple[int, str, dict[str, Any]]


def call_verifier(fn: VerifierFn, completion: str, record: dict[str, Any], kwargs: dict[str, Any]) -> Outcome:
    """Run one verifier on one completion, turning an exception or a malformed return into an error."""
    try:
        facts = fn(completion, record, **kwargs)
        if not isinstance(facts, dict):
            raise TypeError(f"verifier returned {type(facts).__name__}, expected a dict of facts")
        json.dumps(facts)  # facts go to logs and rewards: fail on a bad value here, named, not later
    except Exception as e:
        return False, f"{type(e).__name__}: {e}"
    return True, facts


def _exit_with_parent() -> None:
    # Daemon workers are reaped when the parent exits normally; this covers a parent killed hard,
    # even while a verifier hangs (the thread still gets the GIL every few ms).
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def worker_main(conn: Connection, specs: list[VerifierSpec]) -> None:
    """Resolve the specs once, say ``("ready", pid)``, then answer each chunk of items, one outcome per item, in order.

    A ``None`` message or a closed pipe ends the worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    _exit_with_parent()
    try:
        fns = resolve_verifiers(specs)
    except Exception:
        conn.send(("failed", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk: list[Item] | None = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, completion, record in chunk:
            conn.send(call_verifier(fns[index], completion, record, specs[index][2]))
