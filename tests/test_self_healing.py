"""Runs heal from the failures that are routine on a cluster: a rollout worker that crashes during a
call or between calls is restarted by Ray, gets every weight again and the call is retried (same
prompts); a learner that dies is replaced and the run resumes from its last checkpoint on its own.
Parity checks run every step, so a restarted worker left on its starting weights would stop the run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlpost.actors import ActorDiedError
from rlpost.config import load_config
from rlpost.controller import train
from test_controller import PLUGIN, SMALL, metrics

FAILURES = Path(__file__).resolve().parent.parent / "scripts" / "soak_plugins.py"
RAY = ["cluster.mode=ray", "cluster.num_cpus=2", "train.parity_check_every=1"]


@pytest.fixture
def ray_session():
    yield
    import ray

    ray.shutdown()


def cfg_for(run_dir, *extra: str):
    return load_config("quickstart", SMALL + RAY + [f"run.output_dir={run_dir}", *extra])


def data_state(run_dir: Path, step: int) -> dict:
    return torch.load(run_dir / "checkpoints" / f"step_{step:06d}" / "controller.pt", weights_only=False)["data"]


@pytest.mark.slow
def test_a_rollout_worker_that_crashes_mid_call_is_restarted_and_the_step_retried(run_dir, tmp_path, ray_session):
    # the engine's process dies on its second generate call, in every incarnation: steps 1 and 2 each need a restart
    train(cfg_for(run_dir, "train.steps=3", f"rollout.engine={PLUGIN}:engine_that_dies"))
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["failures/rollout_restarts"] for r in rows] == [0.0, 1.0, 2.0]
    assert rows[-1]["rollout/total"] == 3 * 4 * 4  # every step's completions once, none generated twice
    straight = tmp_path / "straight"
    train(load_config("quickstart", SMALL + [f"run.output_dir={straight}", "train.steps=3"]))
    assert data_state(run_dir, 3) == data_state(straight, 3)  # the same prompts, none skipped or repeated


@pytest.mark.slow
def test_a_restart_between_calls_is_noticed_and_the_worker_gets_the_weights_again(run_dir, ray_session, caplog):
    train(cfg_for(run_dir, "train.steps=3", "optim.lr=1e-2", f"callbacks=[{{name: crash, fn: '{FAILURES}:kill_rollout', kwargs: {{at: 0}}}}]"))
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[-1]["failures/rollout_restarts"] == 1.0
    assert "the rollout actor was restarted before generate" in caplog.text
    checked = [r["sync/parity_max_diff"] for r in rows[1:] if "sync/parity_max_diff" in r]  # steps with samples to check
    assert checked and max(checked) < 1e-3


@pytest.mark.slow
def test_a_learner_that_dies_is_replaced_and_the_run_resumes_from_its_last_checkpoint(run_dir, tmp_path, ray_session):
    marker = tmp_path / "killed"
    kill = f"callbacks=[{{name: crash, fn: '{FAILURES}:kill_learner', kwargs: {{at: 2, marker: '{marker}'}}}}]"
    train(cfg_for(run_dir, "train.steps=5", "train.save_every=2", kill))
    rows = metrics(run_dir)
    assert marker.exists() and [r["step"] for r in rows] == [0, 1, 2, 3, 4]  # steps 2 and 3 done again, logged once
    assert [r["failures/learner_restarts"] for r in rows] == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.slow
def test_restarts_are_bounded(run_dir, ray_session):
    with pytest.raises(ActorDiedError, match=r"rollout actor .*Ray restarted it 1 times already, the most allowed.*rerun the same command"):
        train(cfg_for(run_dir, "train.steps=4", "train.max_restarts=1", f"rollout.engine={PLUGIN}:engine_that_dies"))
