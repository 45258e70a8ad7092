"""A data-parallel learner group (cluster.learner_ranks): two gloo ranks in Ray actors give the one-rank
update on the same batch in every update mode, stay bitwise identical after every step of a run, and
resume exactly from a checkpoint; what a group cannot do is refused before any model loads."""
from __future__ import annotations

import shutil

import pytest
import torch

from rlpost.actors import start_cluster
from rlpost.config import ConfigError, load_config
from rlpost.controller import train
from rlpost.learner.group import merge_rank_metrics, start_learner_group
from rlpost.learner.learner import Learner
from rlpost.placement import check_placement
from rlpost.rollout.hf_engine import HFEngine
from test_controller import PLUGIN, SMALL, _weights, metrics
from test_self_healing import RAY, ray_session  # noqa: F401 (fixture)
from test_update_modes import batch

pytest.importorskip("peft")


def test_rank_metrics_are_averaged_and_maxima_kept():
    merged = merge_rank_metrics([{"learner/loss": 1.0, "learner/logprob_mismatch_max": 0.1, "train/samples": 4.0},
                                 {"learner/loss": 3.0, "learner/logprob_mismatch_max": 0.3, "train/samples": 4.0}])
    assert merged == {"learner/loss": 2.0, "learner/logprob_mismatch_max": 0.3, "train/samples": 4.0}


@pytest.mark.parametrize("setting, why", [
    (["cluster.mode=local"], "cluster.mode=local"),
    (["cluster.mode=ray", "cluster.placement=colocated"], "cluster.placement=colocated"),
    (["cluster.mode=ray", "train.stream_parts=2"], "train.stream_parts=2"),
])
def test_what_a_group_cannot_do_is_one_line(setting, why):
    cfg = load_config("quickstart", SMALL + ["cluster.learner_ranks=2", *setting])
    with pytest.raises(ConfigError, match=f"learner_ranks=2 cannot run with {why}"):
        check_placement(cfg)


def test_ranks_sharing_a_gpu_are_refused_in_one_line():
    cfg = load_config("quickstart", SMALL + ["cluster.mode=ray", "cluster.learner_ranks=2", "cluster.learner_gpus=0.5"])
    with pytest.raises(ConfigError, match="ranks could share a GPU, which NCCL cannot do"):
        check_placement(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora", "sparse"])
def test_two_ranks_give_the_one_rank_update(mode, tiny_model_path, ray_session):  # noqa: F811
    # SGD: the step is the gradient (Adam's first step is sign-like, blowing float noise up to lr); sparse
    # trains only with its masked AdamW, so there the gradient norms carry the comparison
    optim = ["optim.name=sgd", "optim.lr=0.1", "optim.grad_clip=1e9"] if mode != "sparse" else ["optim.lr=1e-3"]
    cfg = load_config(None, [*optim, "cluster.mode=ray", "cluster.num_cpus=2", "cluster.learner_ranks=2",
                             "algo.minibatches=2", f"learner.update={mode}"])
    engine, one = HFEngine(tiny_model_path), Learner(cfg, tiny_model_path)
    start_cluster(cfg.cluster)
    group = start_learner_group(cfg, tiny_model_path)
    try:
        for step in range(3):  # 3 steps x 2 minibatches: 6 optimizer steps, each split over the ranks
            b = batch(engine, step)
            alone, together = one.update(b), group.call("update", b)
            a, g = group.each("weights_digest")
            assert a == g  # the ranks are bitwise identical
            assert together["train/samples"] == alone["train/samples"] == 4
            assert together["learner/grad_norm"] == pytest.approx(alone["learner/grad_norm"], rel=1e-4) and alone["learner/grad_norm"] > 0
        mine, theirs = one.read_weights("merged"), group.call("read_weights", "merged")
        assert mode == "sparse" or max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-5  # float summation order differs
    finally:
        group.kill()


@pytest.mark.slow
def test_a_run_with_two_ranks_keeps_them_identical_and_resumes_exactly(run_dir, ray_session):  # noqa: F811
    check = f"callbacks=[{{name: ranks, fn: '{PLUGIN}:identical_ranks'}}]"
    cfg = load_config("quickstart", SMALL + RAY + [f"run.output_dir={run_dir}", "cluster.num_cpus=3", "cluster.learner_ranks=2",
                                                   "train.steps=4", "train.save_every=2", "algo.epochs=2", check])
    train(cfg)
    rows = metrics(run_dir)
    assert [r["test/ranks_identical"] for r in rows] == [2.0] * 4  # checked after every step
    assert all(r["sync/parity_max_diff"] < 1e-3 for r in rows if "sync/parity_max_diff" in r)
    straight = _weights(run_dir / "checkpoints" / "step_000004")
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")
    train(cfg)  # resumes from step 2 with a new group
    resumed = _weights(run_dir / "checkpoints" / "step_000004")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.slow
def test_a_dead_rank_ends_the_group_and_the_run_resumes_with_a_new_one(run_dir, tmp_path, ray_session):  # noqa: F811
    from test_self_healing import FAILURES

    marker = tmp_path / "killed"
    kill = f"callbacks=[{{name: crash, fn: '{FAILURES}:kill_learner', kwargs: {{at: 2, marker: '{marker}', rank: 1}}}}]"
    train(load_config("quickstart", SMALL + RAY + [f"run.output_dir={run_dir}", "cluster.num_cpus=3", "cluster.learner_ranks=2",
                                                   "train.steps=4", "train.save_every=2", kill]))
    rows = metrics(run_dir)
    assert marker.exists() and [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["failures/learner_restarts"] == 1.0
