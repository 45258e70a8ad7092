"""Several rollout workers behind one handle (cluster.rollout_workers): each prompt whole to one worker,
completions back in request order, one export loaded by every worker, parity per worker, worker states
checkpointed one by one, and a worker killed mid-run restarted by Ray with nothing skipped or repeated."""
from __future__ import annotations

import pytest
import torch

from rlpost.actors import LocalHandle
from rlpost.config import ConfigError, load_config
from rlpost.controller import SyncError, sync_weights, train
from rlpost.learner.learner import Learner
from rlpost.rollout.hf_engine import HFEngine
from rlpost.rollout.pool import RolloutPool, worker_of
from rlpost.rollout.worker import RolloutWorker
from rlpost.types import Request, SamplingParams, TrainBatch, TrainSample
from test_controller import SMALL, metrics
from test_self_healing import FAILURES, RAY, data_state, ray_session  # noqa: F401 (fixture)


def pool_of(path: str, workers: int) -> RolloutPool:
    return RolloutPool([LocalHandle(RolloutWorker.around(HFEngine(path, seed=i))) for i in range(workers)])


def requests(n_prompts: int, n: int | None = None) -> list[Request]:
    return [Request(prompt_ids=[1, 5 + k, 7, 9], n=n, key=k) for k in range(n_prompts)]


def test_requests_go_whole_to_a_worker_chosen_by_key():
    assert [worker_of(k, 2) for k in range(5)] == [0, 1, 0, 1, 0]
    assert worker_of(("q1", 3), 3) == worker_of(("q1", 3), 3)  # any key, the same worker every round


def test_completions_come_back_in_request_order_from_both_workers(tiny_model_path):
    pool = pool_of(tiny_model_path, 2)
    reqs = requests(5, n=None) + [Request(prompt_ids=[1, 4, 4], n=3, key=5)]  # per-request n, as adaptive samplers send
    out = pool.call("generate", reqs, SamplingParams(n=2, max_new_tokens=3))
    assert [c.key for c in out] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert all(c.prompt_ids == reqs[c.key].prompt_ids for c in out)
    assert all(w.obj.last_generate_s > 0 for w in pool.workers)  # both workers had a share
    assert [c.worker for c in out] == [c.key % 2 for c in out]  # each completion names its worker


class StaleHF(HFEngine):
    """Acknowledges a sync (takes the version) but keeps its old weights: the bug parity checks catch."""

    def load_weights(self, payload) -> None:
        self.version = payload.version


def grpo_batch(completions) -> TrainBatch:
    """Groups of 4 with fixed advantages (longer completions better), enough to move the weights."""
    samples = []
    for i in range(0, len(completions), 4):
        group = completions[i : i + 4]
        rewards = [0.1 * len(c.token_ids) + 0.1 * j for j, c in enumerate(group)]
        mean = sum(rewards) / len(rewards)
        samples += [TrainSample(c.prompt_ids, c.token_ids, c.logprobs, r - mean, policy_version=c.policy_version) for c, r in zip(group, rewards)]
    return TrainBatch(samples, temperature=1.0, max_new_tokens=4)


def test_one_export_reaches_every_worker_and_parity_is_checked_per_worker(tiny_model_path):
    cfg = load_config("quickstart", SMALL + ["train.parity_check_every=1", "optim.lr=1e-2"])
    learner = LocalHandle(Learner(cfg, tiny_model_path))
    pool = pool_of(tiny_model_path, 2)
    batch = grpo_batch(pool.call("generate", requests(4), SamplingParams(n=4, max_new_tokens=4)))
    learner.call("update", batch)
    out = sync_weights(cfg, learner, pool, batch, step=0)
    assert out["sync/version"] == 1 and out["sync/parity_max_diff"] < 1e-4
    assert out["sync/bytes"] > 0 and pool.each("ready") == [True, True]

    learner.call("update", batch)
    half_stale = RolloutPool([pool.workers[0], LocalHandle(RolloutWorker.around(StaleHF(tiny_model_path)))])
    with pytest.raises(SyncError, match="rollout worker 1 of 2 is on stale or wrong weights"):
        sync_weights(cfg, learner, half_stale, batch, step=1)


def test_each_worker_keeps_its_own_sampler_state_across_a_checkpoint(tiny_model_path):
    pool = pool_of(tiny_model_path, 2)
    pool.call("generate", requests(4), SamplingParams(n=2, max_new_tokens=3))
    state = pool.call("state_dict")
    assert len(state["workers"]) == 2
    nxt = pool.call("generate", requests(4), SamplingParams(n=2, max_new_tokens=3))
    fresh = pool_of(tiny_model_path, 2)
    fresh.call("load_state_dict", state)
    again = fresh.call("generate", requests(4), SamplingParams(n=2, max_new_tokens=3))
    assert [c.token_ids for c in again] == [c.token_ids for c in nxt]
    one = pool_of(tiny_model_path, 1)
    one.call("load_state_dict", pool.workers[0].call("state_dict"))  # a single worker's checkpoint, as before pools


def test_a_run_with_two_workers_trains_on_every_prompt_once(run_dir, tmp_path):
    train(load_config("quickstart", SMALL + [f"run.output_dir={run_dir}", "train.steps=3", "cluster.rollout_workers=2"]))
    rows = metrics(run_dir)
    assert [r["train/completions"] for r in rows] == [16.0] * 3 and rows[-1]["rollout/total"] == 48
    # each worker's rollout/learner gap by name (over the groups the pipeline kept); on-policy here: float noise
    gaps = {k: v for r in rows for k, v in r.items() if k.startswith("learner/logprob_mismatch_worker")}
    assert gaps.keys() == {"learner/logprob_mismatch_worker0", "learner/logprob_mismatch_worker1"}
    assert max(gaps.values()) < 1e-3


def test_colocated_placement_has_one_engine():
    cfg = load_config("quickstart", SMALL + ["cluster.placement=colocated", "cluster.rollout_workers=2"])
    from rlpost.placement import check_placement

    with pytest.raises(ConfigError, match="rollout_workers=2 needs cluster.placement=separate"):
        check_placement(cfg)


def test_an_unreachable_cluster_address_is_one_line_within_seconds(run_dir):
    import time

    from rlpost.actors import check_reachable

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="nothing answers there within 2 s"):
        check_reachable("127.0.0.1:9", timeout_s=2)  # the discard port: nothing listens
    assert time.monotonic() - t0 < 10
    with pytest.raises(ConfigError, match="expected host:port"):
        check_reachable("head-node")


@pytest.mark.slow
def test_more_workers_than_the_cluster_has_cpus_is_one_line(run_dir, ray_session):  # noqa: F811
    cfg = load_config("quickstart", SMALL + RAY[:1] + [f"run.output_dir={run_dir}", "cluster.num_cpus=2", "cluster.rollout_workers=2"])
    with pytest.raises(ConfigError, match="starts 3 actors .* has 2 CPUs"):
        train(cfg)


@pytest.mark.slow
def test_killing_one_of_two_workers_mid_run_loses_no_prompt(run_dir, tmp_path, ray_session):  # noqa: F811
    kill = f"callbacks=[{{name: crash, fn: '{FAILURES}:kill_rollout', kwargs: {{at: 0, wait: false, worker: 1}}}}]"
    train(load_config("quickstart", SMALL + RAY + [f"run.output_dir={run_dir}", "cluster.num_cpus=3", "cluster.rollout_workers=2",
                                                   "train.steps=3", "train.save_every=3", kill]))
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[-1]["failures/rollout_restarts"] == 1.0
    assert rows[-1]["rollout/total"] == 3 * 4 * 4  # every step's completions once, none generated twice
    checked = [r["sync/parity_max_diff"] for r in rows[1:] if "sync/parity_max_diff" in r]
    assert checked and max(checked) < 1e-3  # the restarted worker got the weights again
    straight = tmp_path / "straight"
    train(load_config("quickstart", SMALL + [f"run.output_dir={straight}", "train.steps=3", "train.save_every=3"]))
    assert data_state(run_dir, 3) == data_state(straight, 3)  # the same prompts, none skipped or repeated
    assert torch.load(run_dir / "checkpoints" / "step_000003" / "rollout.pt", weights_only=False)["workers"]
