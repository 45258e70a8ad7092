"""LearnerGroup: R data-parallel Learner ranks behind the one learner handle the controller talks to.

The ranks sit in a Ray placement group (``cluster.learner_strategy``: PACK or SPREAD over nodes) and
join one torch.distributed group (``rlpost.learner.data_parallel``). Calls that change the weights or
the optimizer (update, load, write_weights, ...) go to every rank, with the same arguments: each rank
trains on its share of the batch and the gradients are all-reduced, so the ranks stay identical.
Calls that only read (export, logprobs, prepare, save, ...) go to rank 0. A rank that dies ends the
group; the run resumes from its last checkpoint with a new one (``controller.train``).
"""
from __future__ import annotations

from typing import Any

from rlpost.actors import HandleGroup, spawn
from rlpost.config import Config, ConfigError

# Reads: rank 0 answers for the group (its weights are every rank's).
FIRST_ONLY = frozenset({"prepare", "objective_gradients", "export_weights", "describe", "read_weights", "logprobs", "save",
                        "save_hf"})
# Changes: every rank, same arguments.
EVERY_RANK = frozenset({"ready", "update", "write_weights", "request_full_sync", "load"})
PLACE_TIMEOUT_S = 120  # how long Ray may take to find room for the ranks before the run says it cannot


class LearnerGroup(HandleGroup):
    kind = "learner group"

    def __init__(self, members: list[Any], placement_group: Any = None) -> None:
        super().__init__(members)
        self.placement_group = placement_group

    def submit(self, name: str, *args, **kwargs) -> Any:
        if name in FIRST_ONLY:  # rank 0's own future: an export can go straight to the rollout workers
            return self.members[0].submit(name, *args, **kwargs)
        return super().submit(name, *args, **kwargs)

    def plan(self, name: str, args: tuple, kwargs: dict) -> tuple[list[tuple[Any, tuple, dict]], Any]:
        if name in EVERY_RANK:
            return [(m, args, kwargs) for m in self.members], None
        raise AttributeError(f"learner group: '{name}' is not supported with cluster.learner_ranks={len(self.members)}")

    def combine(self, name: str, outs: list[Any], context: Any) -> Any:
        return merge_rank_metrics(outs) if name == "update" else outs[0]

    def kill(self) -> None:
        super().kill()
        if self.placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement_group)
            self.placement_group = None


def merge_rank_metrics(outs: list[dict[str, float]]) -> dict[str, float]:
    """One update's metrics over the ranks, by the rule for micro-batches (each rank saw its share of the
    batch); batch-wide values (tokens, lr, grad norm) are the same on every rank."""
    from rlpost.learner.learner import reduce_stats

    return reduce_stats({k: [out[k] for out in outs if k in out] for k in {k for out in outs for k in out}})


def start_learner_group(cfg: Config, policy: str) -> LearnerGroup:
    """R Learner actors in a placement group, joined into one torch.distributed group from rank 0's weights."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from rlpost.learner.learner import Learner

    c = cfg.cluster
    bundle = {"CPU": 1, **({"GPU": c.learner_gpus} if c.learner_gpus else {})}
    pg = placement_group([bundle] * c.learner_ranks, strategy=c.learner_strategy)
    ready, _ = ray.wait([pg.ready()], timeout=PLACE_TIMEOUT_S)
    if not ready:
        remove_placement_group(pg)
        raise ConfigError(f"Ray found no room for {c.learner_ranks} learner ranks of {bundle} each with strategy "
                          f"{c.learner_strategy} within {PLACE_TIMEOUT_S} s: lower cluster.learner_ranks, use PACK/SPREAD, "
                          "or add nodes")
    ranks = [spawn(Learner, c, "learner", cfg, policy, num_gpus=c.learner_gpus, bundle=(pg, r)) for r in range(c.learner_ranks)]
    address = ranks[0].call("endpoint")
    joining = [h.submit("join_group", r, c.learner_ranks, address) for r, h in enumerate(ranks)]
    for h, f in zip(ranks, joining):
        h.result(f, "join_group")
    return LearnerGroup(ranks, pg)
