"""The RL loop end to end on the tiny model: observability, sampler rounds, failure handling,
exact resume, Ray actors, and recovery after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlpost.config import ConfigError, load_config
from rlpost.controller import collect_groups, next_items, train
from rlpost.actors import LocalHandle
from rlpost.data.recipe import encode_prompts, load_split
from rlpost.data import PromptDataset
from rlpost.models.loading import load_tokenizer, resolve_model_path
from rlpost.rollout.worker import RolloutWorker
from rlpost.scoring import Scorer

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "tests" / "fixtures" / "plugin_run.py"

SMALL = [
    "train.warm_start=none", "train.eval_before=false", "train.eval_after=false", "log.progress=false",
    "log.tensorboard=false", "cluster.mode=local", "train.prompts_per_step=4", "rollout.n=4",
    "rollout.max_new_tokens=4", "eval.limit=8", "data.task_kwargs={n_train: 64, n_test: 16}", "optim.lr=1e-3",
    "optim.warmup_steps=0", "optim.schedule=constant", "rollout.temperature=1.0", "train.micro_batch_size=64",
    "train.eval_every=0", "train.save_every=0",
    # an untrained model is never correct; a digit-format reward gives the groups a spread to learn from
    "rewards=[{name: correctness, kwargs: {verifier: math}}, {name: digits, fn: format, kwargs: {pattern: '^[0-9]'}}]",
]


def small_cfg(run_dir: Path, *extra: str):
    return load_config("quickstart", SMALL + [f"run.output_dir={run_dir}", *extra])


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_logs_every_metric_and_saves(run_dir):
    train(small_cfg(run_dir, "train.steps=3", "train.parity_check_every=1", "train.eval_after=true"))
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2]
    expected = {
        "reward/correctness", "reward/mean", "train/accuracy", "train/response_length", "train/groups_nonzero_adv_frac",
        "train/tokens", "learner/clip_frac", "learner/entropy", "learner/logprob_mismatch", "sync/parity_max_diff",
        "time/gen", "time/verify", "time/reward", "time/old_logprob", "time/update", "time/sync", "time/wait",
        "verify/errors/math", "verify/timeouts/math",
    }
    trained = [r for r in rows if "learner/loss" in r]
    for key in expected - {"learner/clip_frac", "learner/entropy", "learner/logprob_mismatch"}:
        assert key in rows[-1], key
    if trained:
        assert {"learner/clip_frac", "learner/entropy", "learner/logprob_mismatch"} <= set(trained[0])
    assert (run_dir / "final" / "config.json").is_file()
    assert (run_dir / "eval_after.json").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3


def test_sampler_seam_runs_a_second_round_for_degenerate_groups(run_dir):
    cfg = small_cfg(run_dir, f"sampler.name={PLUGIN}:RetryDegenerate")
    from rlpost.rollout.samplers import SAMPLERS

    sampler = SAMPLERS.get(cfg.sampler.name)(n=4)
    path = str(resolve_model_path(cfg.model))
    tok = load_tokenizer(path)
    records = load_split(cfg, "train")
    texts, ids = encode_prompts(cfg, records, tok)
    rollout = LocalHandle(RolloutWorker(cfg, path))
    scorer = Scorer(cfg)
    try:
        from rlpost.types import SamplingParams

        items = next_items(PromptDataset(records, seed=0), 4, texts, ids)
        groups, m = collect_groups(sampler, rollout, scorer, items, SamplingParams(n=4, max_new_tokens=4))
    finally:
        scorer.close()
    for key, g in groups.items():
        first = g.members[:4]
        degenerate = len({s.correct for s in first}) == 1
        assert len(g.members) == (8 if degenerate else 4)
        assert g.stats["count"] == len(g.members) and g.item.key == key  # the pool statistics travel with the group
    assert m["rollout/rounds"] == (2 if any(len(g.members) == 8 for g in groups.values()) else 1)


def test_failing_verifiers_and_rewards_are_reported_and_the_run_goes_on(run_dir, tmp_path):
    marker = tmp_path / "hung"
    train(small_cfg(
        run_dir, "train.steps=3", "verify.timeout_s=1.0",
        f"verify.verifiers=[{{name: math}}, {{name: hang, fn: '{PLUGIN}:hang_once', kwargs: {{marker: '{marker}'}}}},"
        f" {{name: flaky, fn: '{PLUGIN}:raise_sometimes'}}]",
        f"rewards=[{{name: digits, fn: format, kwargs: {{pattern: '^[0-9]'}}}}, {{name: flaky, fn: '{PLUGIN}:reward_raises_on_second_call', weight: 1.0}}]",
    ))
    rows = metrics(run_dir)
    assert len(rows) == 3
    assert sum(r["verify/timeouts/hang"] for r in rows) == 1
    assert sum(r["verify/errors/flaky"] for r in rows) > 0
    assert rows[1].get("reward/raised/flaky") == 1.0
    assert rows[1]["reward/dropped"] == 16  # the whole step's samples had an unknown reward
    assert rows[2]["reward/dropped"] == 0


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in (ckpt / "learner" / "model").glob("*.safetensors"):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize(
    "async_rollout, mode",
    [(False, "full"), (True, "full"), (False, "lora"), (False, "sparse")],
    ids=["sync", "async", "lora", "sparse"],
)
def test_resume_is_exact(run_dir, async_rollout, mode):
    """N steps + resume + N steps == 2N straight steps: same weights, same metrics."""
    if mode == "lora":
        pytest.importorskip("peft")
    cfg = small_cfg(run_dir, "train.steps=4", "train.save_every=2", "algo.epochs=2", f"train.async_rollout={async_rollout}",
                    f"learner.update={mode}")
    train(cfg)
    straight = _weights(run_dir / "checkpoints" / "step_000004")
    straight_rows = metrics(run_dir)
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "step_000004")
    train(cfg)  # resumes from step 2
    resumed = _weights(run_dir / "checkpoints" / "step_000004")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    assert strip(metrics(run_dir)) == strip(straight_rows)


def test_a_checkpoint_from_another_update_mode_is_refused(run_dir):
    train(small_cfg(run_dir, "train.steps=1"))
    with pytest.raises(ConfigError, match="learner.update=full, this run asks for learner.update=sparse"):
        train(small_cfg(run_dir, "train.steps=2", "learner.update=sparse"))
    train(small_cfg(run_dir, "train.steps=1", "learner.update=sparse"), resume=False)  # --no-resume starts over


def test_a_streamed_run_trains_on_policy(run_dir):
    train(small_cfg(run_dir, "train.steps=3", "train.stream_parts=2", "train.parity_check_every=1"))
    rows = metrics(run_dir)
    assert [r["rollout/stream_parts"] for r in rows] == [2.0, 2.0, 2.0]
    assert all(r["train/completions"] == 16 for r in rows)
    trained = [r for r in rows if "learner/loss" in r]
    assert trained and all(r["learner/logprob_mismatch_max"] < 1e-4 for r in trained)  # generated by the weights trained


def test_streaming_is_refused_where_the_batch_is_needed_whole(run_dir):
    with pytest.raises(ConfigError, match="train.stream_parts=2 cannot be used here: algo.epochs x algo.minibatches = 2"):
        train(small_cfg(run_dir, "train.steps=1", "train.stream_parts=2", "algo.epochs=2"))
    with pytest.raises(ConfigError, match="samples in several rounds"):
        train(small_cfg(run_dir, "train.steps=1", "train.stream_parts=2", f"sampler.name={PLUGIN}:RetryDegenerate"))


@pytest.mark.slow
def test_ray_actors_train_and_sync(run_dir):
    cfg = small_cfg(
        run_dir, "cluster.mode=ray", "cluster.num_cpus=2", "train.steps=3", "train.parity_check_every=1",
        "train.async_rollout=true", "train.stream_parts=2",
    )
    try:
        train(cfg)
    finally:
        import ray

        ray.shutdown()
    rows = metrics(run_dir)
    assert len(rows) == 3 and rows[-1]["sync/parity_max_diff"] < 1e-3
    # with async rollouts, the step after the first trains on completions from the previous policy
    assert rows[1]["learner/logprob_mismatch"] > 0


@pytest.mark.slow
def test_sigkill_mid_run_resumes_from_last_checkpoint_and_finishes(run_dir):
    args = [sys.executable, "-m", "rlpost.cli", "train", "quickstart", *SMALL, f"run.output_dir={run_dir}",
            "train.steps=40", "train.save_every=5"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline and not list((run_dir / "checkpoints").glob("step_000010")):
        time.sleep(0.2)
    time.sleep(0.3)  # land mid-step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert done and proc.returncode == -signal.SIGKILL
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 40
    assert [r["step"] for r in metrics(run_dir)] == list(range(40))


def test_a_sync_that_leaves_stale_weights_fails_loudly(run_dir, monkeypatch):
    """The engine reports the new version but keeps its old weights (as a missed reload or a stale
    KV/prefix cache would): on-policy samples no longer match the learner and the run stops."""
    from rlpost.controller import SyncError
    from rlpost.rollout.hf_engine import HFEngine

    def version_only(self, payload):
        self.version = payload.version

    monkeypatch.setattr(HFEngine, "load_weights", version_only)
    with pytest.raises(SyncError, match="stale or wrong weights"):
        train(small_cfg(run_dir, "train.steps=4", "train.parity_check_every=1", "optim.lr=1e-2"))


@pytest.mark.slow
def test_a_crashed_actor_is_named_and_the_run_resumes(run_dir):
    base = [sys.executable, "-m", "rlpost.cli", "train", "quickstart", *SMALL, f"run.output_dir={run_dir}",
            "cluster.mode=ray", "cluster.num_cpus=2", "train.steps=3", "train.save_every=1"]
    died = subprocess.run(base + [f"rollout.engine={PLUGIN}:engine_that_dies", "train.max_restarts=0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert died.returncode == 1, died.stderr[-2000:]
    last = died.stderr.strip().splitlines()[-1]
    assert last.startswith("rlpost: error: the rollout actor died during generate") and "resume" in last
    assert (run_dir / "checkpoints" / "step_000001").is_dir()
    again = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [r["step"] for r in metrics(run_dir)] == [0, 1, 2]


def test_split_parts_cuts_whole_groups_in_order():
    from rlpost.streaming import split_parts

    assert split_parts([0, 1, 2, 3, 4, 5, 6], 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_parts([0, 1], 4) == [[0], [1]]  # never an empty part
    assert split_parts([0, 1, 2], 1) == [[0, 1, 2]]


def test_the_composed_recipe_runs_every_stage_on_a_lora_learner(run_dir):
    """unlikeliness + D3S + LoRA from one recipe: one prepare pass a step (with entropy), ragged
    down-sampled rows, token weights, adapter syncs that keep the rollout on-policy."""
    pytest.importorskip("peft")
    cfg = load_config("unlikeliness-d3s-lora", SMALL + [
        f"run.output_dir={run_dir}", "train.steps=3", "train.parity_check_every=1", "rollout.n=8",
        "rewards=[{name: correctness, kwargs: {verifier: expr}}, {name: digits, fn: format, kwargs: {pattern: '^[0-9]'}}]",
    ])
    train(cfg)
    rows = metrics(run_dir)
    trained = [r for r in rows if "learner/loss" in r]
    assert trained and all(r["time/prepare"] > 0 for r in rows)
    assert all(r["train/samples"] <= 4 * r["d3s/samples_per_prompt"] < 4 * 8 for r in trained)  # 4 prompts x N(p)
    assert all(r["train/tokens"] < r["train/tokens_forward"] for r in trained)
    assert all(r.get("sync/parity_max_diff", 0.0) < 1e-3 for r in rows) and "sync/parity_max_diff" in rows[-1]
