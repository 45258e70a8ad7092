"""Run components as Ray actors or in-process behind one handle type.

`handle.call(name, ...)` returns the result; `handle.submit(name, ...)` returns a future that
can be passed straight into another call (Ray resolves object refs zero-copy), so weight
payloads travel learner -> object store -> rollout worker without a stop at the driver.
"""
from __future__ import annotations

import os
from typing import Any

from rlpost.config import ClusterConfig

# Passed to every actor process: one torch thread unless a component sets its own.
_ACTOR_ENV = (
    "HF_HUB_OFFLINE", "RLPOST_CACHE", "RLPOST_SHARED_DATA", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "TOKENIZERS_PARALLELISM",
)


class ActorDiedError(RuntimeError):
    """A rollout worker or learner process died; the run can resume from its last checkpoint."""


class LocalHandle:
    """The same interface as RayHandle over an object in this process (unit tests, debugging)."""

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
    def __init__(self, actor, label: str) -> None:
        self.actor = actor
        self.label = label

    def submit(self, name: str, *args, **kwargs):
        return getattr(self.actor, name).remote(*args, **kwargs)

    def call(self, name: str, *args, **kwargs) -> Any:
        return self.result(self.submit(name, *args, **kwargs), name)

    def result(self, future, name: str = "a call") -> Any:
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(future)
        except RayActorError as e:
            raise ActorDiedError(
                f"the {self.label} actor died during {name} ({type(e).__name__}); "
                "rerun the same command to resume from the last checkpoint"
            ) from e

    def kill(self) -> None:
        import ray

        ray.kill(self.actor)


def start_cluster(cfg: ClusterConfig) -> None:
    """Start (or join, with cluster.address) Ray; a no-op in local mode."""
    if cfg.mode == "local":
        return
    import ray

    if ray.is_initialized():
        return
    env = {k: v for k, v in os.environ.items() if k in _ACTOR_ENV or k.startswith(("VLLM_", "RLPOST_VLLM_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": "WARNING", "log_to_driver": True}
    if cfg.address:
        kwargs["address"] = cfg.address
    else:
        kwargs.update(num_cpus=cfg.num_cpus or os.cpu_count(), include_dashboard=False)
    ray.init(**kwargs)


def spawn(cls: type, cfg: ClusterConfig, label: str, *args, num_cpus: float = 1, num_gpus: float = 0, **kwargs):
    """Create `cls(*args, **kwargs)` as a Ray actor (mode=ray) or in-process (mode=local)."""
    if cfg.mode == "local":
        return LocalHandle(cls(*args, **kwargs))
    import ray

    actor_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(cls)
    return RayHandle(actor_cls.remote(*args, **kwargs), label)


def get(value: Any) -> Any:
    """Resolve a future from `submit` (identity in local mode)."""
    try:
        import ray
        from ray import ObjectRef
    except ImportError:
        return value
    return ray.get(value) if isinstance(value, ObjectRef) else value
