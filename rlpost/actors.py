"""Run components as Ray actors or in-process behind one handle type.

`handle.call(name, ...)` returns the result; `handle.submit(name, ...)` returns a future that
can be passed straight into another call (Ray resolves object refs zero-copy), so weight
payloads travel learner -> object store -> rollout worker without a stop at the driver.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any, Callable

from rlpost.config import ClusterConfig, ConfigError

log = logging.getLogger("rlpost.actors")

RESTART_TIMEOUT_S = 600  # how long a restarting actor may take to build its model again

# Passed to every actor process: one torch thread unless a component sets its own.
ACTOR_ENV = (
    "HF_HUB_OFFLINE", "RLPOST_CACHE", "RLPOST_SHARED_DATA", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "TOKENIZERS_PARALLELISM",
)


class ActorDiedError(RuntimeError):
    """A rollout worker or learner process died; the run can resume from its last checkpoint."""

    def __init__(self, message: str, label: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.label, self.cause = label, cause


class Restartable:
    """An actor class Ray may restart: calls go through ``invoke``, which also returns the process's
    incarnation, so a restart between calls (the new process has only what its constructor built) is
    noticed, not only a death during a call."""

    def invoke(self, name: str, *args, **kwargs) -> tuple[str, Any]:
        if not hasattr(self, "_incarnation"):
            self._incarnation = f"{os.getpid()}-{os.urandom(4).hex()}"
        return self._incarnation, getattr(self, name)(*args, **kwargs)


class LocalHandle:
    """The same interface as RayHandle over an object in this process (unit tests, debugging)."""

    restarts = 0  # nothing restarts in-process

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def call(self, name: str, *args, **kwargs) -> Any:
        return getattr(self.obj, name)(*args, **kwargs)

    submit = call

    def result(self, future: Any, name: str = "a call") -> Any:
        return future

    def kill(self) -> None:
        pass


class RayHandle:
    """An actor; one that Ray may restart (``max_restarts``) is waited for after a death, ``on_restart``
    brings it up to date (e.g. a full weight sync), and the call that failed is made again."""

    def __init__(self, actor, label: str, max_restarts: int = 0) -> None:
        self.actor = actor
        self.label = label
        self.max_restarts = max_restarts
        self.restarts = 0
        self.incarnation: str | None = None  # of a restartable actor: its process when last called
        self.on_restart: Callable[[], Any] | None = None

    def submit(self, name: str, *args, **kwargs):
        if self.max_restarts:
            return self.actor.invoke.remote(name, *args, **kwargs)
        return getattr(self.actor, name).remote(*args, **kwargs)

    def call(self, name: str, *args, **kwargs) -> Any:
        try:
            return self.result(self.submit(name, *args, **kwargs), name)
        except ActorDiedError as e:
            self.restarted(e)
            return self.result(self.submit(name, *args, **kwargs), name)

    def restarted(self, e: ActorDiedError) -> None:
        """Wait for Ray's restart of the actor after ``e``, then bring it up to date; re-raise ``e``
        when it may not restart (again)."""
        import ray
        from ray.exceptions import ActorUnavailableError

        if self.restarts >= self.max_restarts:
            if self.max_restarts:
                raise ActorDiedError(f"{e} (Ray restarted it {self.restarts} times already, the most allowed)", e.label, e.cause) from e
            raise e
        self.restarts += 1
        log.warning("%s: waiting for Ray to restart it (restart %d of %d)", e, self.restarts, self.max_restarts)
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:  # calls fail as "unavailable" while the new process starts
                self.incarnation, _ = ray.get(self.actor.invoke.remote("ready"))
                break
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise ActorDiedError(f"{e}; Ray did not restart it within {RESTART_TIMEOUT_S} s", e.label, e.cause) from None
                time.sleep(0.5)
            except ray.exceptions.RayActorError as dead:
                raise ActorDiedError(f"{e}; then its restart failed: {ray_error_line(dead)}", e.label, e.cause) from dead
        if self.on_restart is not None:
            self.on_restart()

    def result(self, future, name: str = "a call") -> Any:
        import ray
        from ray.exceptions import RayActorError

        try:
            out = ray.get(future)
        except RayActorError as e:
            cause = ray_error_line(e)
            what = "could not start" if e.actor_init_failed else f"died during {name}"
            raise ActorDiedError(f"the {self.label} actor {what}: {cause}", self.label, cause) from e
        if not self.max_restarts:
            return out
        incarnation, out = out
        if self.incarnation not in (None, incarnation):
            self.incarnation = incarnation
            cause = "Ray restarted it after a crash, with only what its constructor built"
            raise ActorDiedError(f"the {self.label} actor was restarted before {name}: {cause}", self.label, cause)
        self.incarnation = incarnation
        return out

    def kill(self, restart: bool = False) -> None:
        """End the actor; with ``restart`` Ray restarts it as after a crash (if it may restart)."""
        import ray

        ray.kill(self.actor, no_restart=not restart)


# Bad input an actor's constructor rejects: the driver names it in one line (ray_error_line), so the actor's
# own log of the traceback is left out (quiet_creation_errors). Any other constructor error keeps it.
INPUT_ERRORS = re.compile(r"^(?:[\w.]+\.)?(?:ValueError|ConfigError|DataError): ")


class _InputErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Exception raised in creation task"):
            return True
        lines = text.strip().splitlines()
        return not INPUT_ERRORS.match(lines[-1].strip())


def quiet_creation_errors() -> None:
    """Ray's worker setup hook (start_cluster): an actor whose constructor rejects its input does not log the
    traceback that Ray would forward to the console before rlpost's one-line error."""
    logging.getLogger("ray._raylet").addFilter(_InputErrorFilter())


def ray_error_line(e: Exception, limit: int = 400) -> str:
    """Ray's error as one line. An actor whose constructor raised carries that exception's traceback,
    whose last line is the exception itself (e.g. "ValueError: learner.lora.target_modules: ...")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if getattr(e, "actor_init_failed", False) and lines:
        return lines[-1][:limit]
    return " ".join(lines)[:limit]


def start_cluster(cfg: ClusterConfig) -> None:
    """Start (or join, with cluster.address) Ray; a no-op in local mode."""
    if cfg.mode == "local":
        return
    if cfg.address is None and "ray" not in sys.modules:
        # A new local cluster gets Ray's default, token authentication, chosen here rather than left unset,
        # which makes Ray warn about it on every start; RAY_AUTH_MODE set by the user wins. Ray reads the
        # mode when it is imported, hence only before that.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:  # a Ray job's actors get the job's runtime env (rlpost submit)
        repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**actor_env(), "PYTHONPATH": os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))}
        kwargs["runtime_env"] = {"env_vars": env, "worker_process_setup_hook": "rlpost.actors.quiet_creation_errors"}
    if cfg.address:
        check_reachable(cfg.address)
        kwargs["address"] = cfg.address
    else:
        # Ray CPUs are scheduling slots (each actor sets its own torch threads): enough for every learner rank and worker.
        kwargs.update(num_cpus=cfg.num_cpus or max(os.cpu_count() or 1, cfg.learner_ranks + cfg.rollout_workers), include_dashboard=False)
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cluster.address={cfg.address}: no Ray cluster answered ({' '.join(str(e).split())[:200]}); "
                          "start one with `ray start --head`, or leave cluster.address unset for a local one") from None


def actor_env() -> dict[str, str]:
    """The environment every actor gets from this process: thread count, offline hub, vLLM settings."""
    env = {k: v for k, v in os.environ.items() if k in ACTOR_ENV or k.startswith(("VLLM_", "RLPOST_VLLM_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def check_reachable(address: str, timeout_s: float = 5.0, key: str = "cluster.address") -> None:
    """A ``host:port`` cluster address accepts a connection within ``timeout_s`` (Ray itself would retry for
    minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{key}={address}: expected host:port of a Ray head (e.g. 10.0.0.1:6379), 'auto' or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"{key}={address}: nothing answers there within {timeout_s:g} s ({e}); is the Ray head "
                          "running (`ray start --head --port ...`) and reachable from here?") from None


def spawn(cls: type, cfg: ClusterConfig, label: str, *args, num_cpus: float = 1, num_gpus: float = 0, max_restarts: int = 0,
          bundle: tuple[Any, int] | None = None, **kwargs):
    """Create `cls(*args, **kwargs)` as a Ray actor (mode=ray; Ray restarts it up to ``max_restarts``
    times after a crash; ``bundle``: (placement group, bundle index) to place it in) or in-process (mode=local)."""
    if cfg.mode == "local":
        return LocalHandle(cls(*args, **kwargs))
    import ray

    actor_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts)(cls)
    if bundle is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        actor_cls = actor_cls.options(scheduling_strategy=PlacementGroupSchedulingStrategy(bundle[0], placement_group_bundle_index=bundle[1]))
    return RayHandle(actor_cls.remote(*args, **kwargs), label, max_restarts)


def get(value: Any) -> Any:
    """Resolve a future from `submit` (identity in local mode)."""
    try:
        import ray
        from ray import ObjectRef
    except ImportError:
        return value
    return ray.get(value) if isinstance(value, ObjectRef) else value


class HandleGroup:
    """One handle over several actor handles (rollout workers, learner ranks) with the interface of one:
    ``plan`` says which members get which arguments for a call, ``combine`` makes their results one.
    A member that Ray restarts in place is asked again for its share only."""

    kind = "group"

    def __init__(self, members: list[Any]) -> None:
        if not members:
            raise ValueError(f"a {self.kind} needs at least one member")
        self.members = list(members)

    def plan(self, name: str, args: tuple, kwargs: dict) -> tuple[list[tuple[Any, tuple, dict]], Any]:
        """(member, args, kwargs) per member that takes part in the call, and what ``combine`` needs."""
        raise NotImplementedError

    def combine(self, name: str, outs: list[Any], context: Any) -> Any:
        raise NotImplementedError

    @property
    def restarts(self) -> int:
        return sum(m.restarts for m in self.members)

    @property
    def on_restart(self) -> Callable[[], Any] | None:
        return getattr(self.members[0], "on_restart", None)

    @on_restart.setter
    def on_restart(self, fn: Callable[[], Any] | None) -> None:
        for m in self.members:
            m.on_restart = fn

    def call(self, name: str, *args, **kwargs) -> Any:
        if len(self.members) == 1:  # its handle retries a call across a restart itself
            return self.members[0].call(name, *args, **kwargs)
        return self.result(self.submit(name, *args, **kwargs), name)

    def submit(self, name: str, *args, **kwargs) -> Any:
        """Send the call to its members now; ``result`` gathers and combines their answers."""
        if len(self.members) == 1:
            return self.members[0].submit(name, *args, **kwargs)
        calls, context = self.plan(name, args, kwargs)
        return _Pending(name, [(m, a, kw, m.submit(name, *a, **kw)) for m, a, kw in calls], context)

    def result(self, future: Any, name: str = "a call") -> Any:
        if not isinstance(future, _Pending):
            return self.members[0].result(future, name)
        outs: list[Any] = [None] * len(future.sent)
        for i in _finishing_order([f for *_, f in future.sent]):  # a member's death is seen while others still wait on it
            m, a, kw, f = future.sent[i]
            outs[i] = _gather(m, f, future.name, a, kw)
        return self.combine(future.name, outs, future.context)

    def each(self, name: str, *args, **kwargs) -> list[Any]:
        """The same call on every member at once, one result per member (checks per worker or rank)."""
        sent = [(m, m.submit(name, *args, **kwargs)) for m in self.members]
        return [_gather(m, f, name, args, kwargs) for m, f in sent]

    def kill(self) -> None:
        for m in self.members:
            m.kill()


class _Pending:
    """A group's call in flight: per member (handle, args, kwargs, future), and what combining needs."""

    def __init__(self, name: str, sent: list, context: Any = None) -> None:
        self.name, self.sent, self.context = name, sent, context


def _finishing_order(futures: list[Any]):
    """Indices of ``futures`` as they finish (Ray object refs), or in order (in-process results)."""
    ray = sys.modules.get("ray")  # never imported in local mode
    if ray is None or not futures or not isinstance(futures[0], ray.ObjectRef):
        yield from range(len(futures))
        return
    index = {f: i for i, f in enumerate(futures)}
    remaining = list(futures)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1)
        yield index[done[0]]


def _gather(member: Any, future: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """One member's result; one that died and may restart is restarted by Ray and asked again."""
    try:
        return member.result(future, name)
    except ActorDiedError as e:
        if not isinstance(member, RayHandle):
            raise
        member.restarted(e)  # re-raises when Ray may not restart it (again)
        return member.call(name, *args, **kwargs)

