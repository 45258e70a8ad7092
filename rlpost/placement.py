"""Where the learner and the rollout engine run: two actors (``separate``) or one (``colocated``).

Colocated placement is verl's hybrid engine on our terms: one actor holds the Learner and a rollout
engine over the same weights. With the HF engine in float32 the engine *is* the learner's module, so
a weight sync moves nothing; otherwise (bf16 HF engine, vLLM) the engine keeps its own copy and a sync
is an in-process copy, never a trip through the object store. On a GPU, vLLM sleeps (weights and KV
cache offloaded) while the learner trains and wakes for the next rollout.

The controller cannot tell the placements apart: it gets a learner handle and a rollout handle either
way; here both are views of one actor.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from rlpost.actors import Restartable, spawn, start_cluster
from rlpost.config import ClusterConfig, Config, ConfigError, ModelConfig
from rlpost.learner.group import start_learner_group
from rlpost.models.device import check_gpus, release_cached_memory
from rlpost.rollout.pool import RolloutPool

# Learner calls that need the device to themselves: a colocated vLLM engine sleeps through them.
_LEARNER_HEAVY = frozenset({"update", "accumulate", "prepare", "sft_step", "objective_gradients"})


def check_resources(cluster: ClusterConfig, model: ModelConfig, actors: int) -> None:
    """The GPUs and CPUs the run asks for exist (local: this machine; Ray: the cluster), and a given cluster
    address answers: one line before any model loads. ``actors``: Ray actors the run starts (one CPU each)."""
    ranks = cluster.learner_ranks
    asked = {"cluster.learner_gpus" if ranks == 1 else f"cluster.learner_gpus x {ranks} ranks": cluster.learner_gpus * ranks}
    if cluster.placement == "separate":
        key = "cluster.rollout_gpus" if cluster.rollout_workers == 1 else f"cluster.rollout_gpus x {cluster.rollout_workers} workers"
        asked[key] = cluster.rollout_gpus * cluster.rollout_workers
    if model.device == "cuda" and not cluster.learner_gpus and cluster.mode == "ray":
        raise ConfigError("model.device=cuda needs cluster.learner_gpus >= 1 (and rollout_gpus for a separate HF "
                          "engine): Ray hides GPUs from actors given none")
    if cluster.mode == "local":
        import torch

        if model.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("model.device=cuda but this machine has no CUDA device (set model.device=auto or cpu)")
        if sum(asked.values()):
            check_gpus(asked, torch.cuda.device_count() if torch.cuda.is_available() else 0, "this machine")
        return
    start_cluster(cluster)  # before importing Ray: it picks its authentication mode on import
    import ray

    where = f"the Ray cluster at {cluster.address}" if cluster.address else "the local Ray cluster"
    if sum(asked.values()):
        check_gpus(asked, ray.cluster_resources().get("GPU", 0), where)
    cpus = ray.cluster_resources().get("CPU", 0)
    if actors > cpus:
        raise ConfigError(f"the run starts {actors} actors (learner ranks and rollout workers) of one CPU each but {where} "
                          f"has {cpus:g} CPUs: lower cluster.rollout_workers or cluster.learner_ranks, or add nodes (ray start --address)")


def check_placement(cfg: Config) -> None:
    """What colocated placement cannot do, named before any model loads."""
    from rlpost.rollout.worker import engine_name

    c = cfg.cluster
    if c.learner_ranks > 1:
        why = {
            "cluster.mode=local": c.mode == "local",  # one torch.distributed group per process: each rank is an actor
            "cluster.placement=colocated": c.placement == "colocated",
            f"train.stream_parts={cfg.train.stream_parts}": cfg.train.stream_parts > 1,
        }
        if any(why.values()):
            raise ConfigError(f"cluster.learner_ranks={c.learner_ranks} cannot run with {', '.join(k for k, v in why.items() if v)}: "
                              "the ranks are Ray actors of their own, each training on its share of the whole batch")
        if 0 < c.learner_gpus < 1:  # NCCL refuses two ranks on one device
            raise ConfigError(f"cluster.learner_ranks={c.learner_ranks} with cluster.learner_gpus={c.learner_gpus:g}: ranks could "
                              "share a GPU, which NCCL cannot do; give each rank a whole GPU (learner_gpus=1) or none (gloo on CPU)")
    if c.placement != "colocated":
        return
    if c.rollout_workers != 1:
        raise ConfigError(f"cluster.placement=colocated holds one engine beside the learner; cluster.rollout_workers="
                          f"{c.rollout_workers} needs cluster.placement=separate")
    if engine_name(cfg) == "vllm" and not c.learner_gpus:
        raise ConfigError("cluster.placement=colocated with rollout.engine=vllm needs a GPU (cluster.learner_gpus >= 1): "
                          "vLLM keeps its own copy of the weights and can hand the device to the learner only by "
                          "sleeping on a GPU; on CPU use rollout.engine=hf or cluster.placement=separate")
    if c.rollout_gpus not in (0, c.learner_gpus):
        raise ConfigError(f"cluster.placement=colocated runs the learner and the engine in one actor with "
                          f"cluster.learner_gpus={c.learner_gpus:g} GPU(s); cluster.rollout_gpus={c.rollout_gpus:g} "
                          "must be 0 or the same")
    if cfg.train.async_rollout:
        raise ConfigError("train.async_rollout=true generates while the learner trains, which one colocated actor "
                          "cannot do: use cluster.placement=separate, or async_rollout=false")


def start_actors(cfg: Config, policy: str) -> tuple[Any, Any]:
    """The learner and rollout handles of the recipe's placement (the rollout worker may be restarted
    in place by Ray when separate; a colocated actor is the learner, so its death resumes the run)."""
    from rlpost.learner.learner import Learner
    from rlpost.rollout.worker import RolloutWorker

    c = cfg.cluster
    start_cluster(c)
    if c.placement == "colocated":
        both = spawn(Colocated, c, "learner", cfg, policy, num_gpus=c.learner_gpus)
        return RoleHandle(both, "learner"), RolloutPool([RoleHandle(both, "rollout")])
    if c.learner_ranks > 1:
        learner = start_learner_group(cfg, policy)
    else:
        learner = spawn(Learner, c, "learner", cfg, policy, num_gpus=c.learner_gpus)
    workers = [
        spawn(RolloutWorker, c, "rollout" if c.rollout_workers == 1 else f"rollout {i}", worker_config(cfg, i), policy,
              num_gpus=c.rollout_gpus, max_restarts=cfg.train.max_restarts)
        for i in range(c.rollout_workers)
    ]
    return learner, RolloutPool(workers)


def worker_config(cfg: Config, i: int) -> Config:
    """Rollout worker i samples with seed run.seed + i (worker 0: the run's seed, as a single worker)."""
    return cfg if i == 0 else cfg.model_copy(update={"run": cfg.run.model_copy(update={"seed": cfg.run.seed + i})})


def actors_needed(cluster: ClusterConfig) -> int:
    """Actors a run starts, each taking one Ray CPU: the learner ranks, and the rollout workers unless colocated."""
    return cluster.learner_ranks + (0 if cluster.placement == "colocated" else cluster.rollout_workers)


@dataclass
class LocalSync:
    """What a colocated learner exports: nothing but the version; the engine reads the weights in place."""

    version: int


class Colocated(Restartable):
    """A Learner and a RolloutWorker in one process, over the same weights where the engine allows."""

    def __init__(self, cfg: Config, model_path: str) -> None:
        from rlpost.learner.learner import Learner
        from rlpost.rollout.hf_engine import HFEngine
        from rlpost.rollout.worker import ENGINES, RolloutWorker, engine_name

        self.learner = Learner(cfg, model_path)
        self.shared = engine_name(cfg) == "hf" and cfg.model.dtype == "float32"
        if self.shared:
            engine = HFEngine.around(self.learner.model, self.learner.tokenizer, cfg.run.seed, cfg.rollout.batch_size)
        else:  # its own copy, on the learner's device
            own = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"rollout_gpus": cfg.cluster.learner_gpus})})
            engine = ENGINES.get(engine_name(cfg))(own, model_path)
        self.rollout = RolloutWorker.around(engine)
        self.asleep = False

    def ready(self) -> bool:
        return True

    def run(self, role: str, name: str, *args, **kwargs) -> Any:
        """``role``'s method ``name``; a sync between the two is local, and the engine sleeps or wakes as needed."""
        if role == "learner":
            if name == "export_weights":
                return LocalSync(self.learner.version)
            if name in _LEARNER_HEAVY:
                self._sleep_engine()
            return getattr(self.learner, name)(*args, **kwargs)
        self._wake_engine()
        if name == "load_weights" and isinstance(args[0], LocalSync):
            return self._sync(args[0])
        with self._inference():
            return getattr(self.rollout, name)(*args, **kwargs)

    def _sync(self, marker: LocalSync) -> dict[str, Any]:
        if self.shared:  # the engine runs the learner's module: nothing moves
            self.rollout.engine.version = marker.version
            return {"version": marker.version, "bytes": 0, "apply_s": 0.0}
        return self.rollout.load_weights(self.learner.export_weights())

    @contextlib.contextmanager
    def _inference(self):
        """A shared module generates in eval mode and goes back to training mode after."""
        model = self.learner.model if self.shared else None
        if model is not None:
            model.eval()
        try:
            yield
        finally:
            if model is not None:
                model.train()
            release_cached_memory(self.learner.device)

    def _sleep_engine(self) -> None:
        if not self.asleep and hasattr(self.rollout.engine, "sleep"):
            self.rollout.engine.sleep()
            self.asleep = True

    def _wake_engine(self) -> None:
        if self.asleep:
            self.rollout.engine.wake()
            self.asleep = False


class RoleHandle:
    """One role (``learner`` or ``rollout``) of a colocated actor, with the interface of its handle."""

    def __init__(self, handle: Any, role: str) -> None:
        self.handle, self.role = handle, role
        self.on_restart = None  # a colocated actor is not restarted in place: the run resumes instead

    @property
    def restarts(self) -> int:
        return self.handle.restarts

    def call(self, name: str, *args, **kwargs) -> Any:
        return self.result(self.submit(name, *args, **kwargs), name)

    def submit(self, name: str, *args, **kwargs) -> Any:
        return self.handle.submit("run", self.role, name, *args, **kwargs)

    def result(self, future: Any, name: str = "a call") -> Any:
        return self.handle.result(future, name)

    def kill(self) -> None:
        self.handle.kill()

