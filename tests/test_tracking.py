"""Metric sinks: what tensorboard, W&B (offline) and MLflow (local sqlite store) hold after a run and a resume,
and the one-line refusal when a sink's package is missing. No network."""
from __future__ import annotations

import json
import math
import struct
import sys
import time

import pytest

from rlpost.config import ConfigError, LogConfig
from rlpost.tracking import Tracker, check_sinks

STEP_METRICS = {"reward/mean": 0.5, "eval/pass@1": 0.25, "learner/kl": math.nan, "time/step": math.inf,
                "rollout/samples_per_prompt": [1.0, 2.0, math.nan, 4.0], "empty": []}
CONFIG = {"algo": {"lr": 0.1, "policy_loss": "grpo"}, "seed": 3}


def run_steps(run_dir, cfg: LogConfig, steps: range, config=None) -> None:
    tracker = Tracker(run_dir, cfg, start_step=steps.start, config=config)
    for step in steps:
        tracker.log(step, {**STEP_METRICS, "reward/mean": float(step)})
    tracker.close()


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                       "WANDB_DISABLE_CODE": "true", "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(key, value)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb_home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def wandb_records(path):
    """The protobuf records of a .wandb file (a LevelDB log: 7-byte header, 32 KiB blocks, chunks with a
    7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if (room := 32768 - pos % 32768) < 7:
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def wandb_history(path) -> dict[int, dict]:
    """{step: row}; a histogram is a dict of _type, values and bins."""
    history = {}
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "history":
            row: dict = {}
            for item in r.history.item:
                *parents, leaf = [item.key] if item.key else item.nested_key
                node = row
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = json.loads(item.value_json)
            history[row["_step"]] = row
    return history


def test_wandb_offline_run_and_resume_append_to_one_run(tmp_path, wandb_env):
    run_dir = tmp_path / "my-run"
    cfg = LogConfig(progress=False, tensorboard=False, wandb=True)
    run_steps(run_dir, cfg, range(0, 3), CONFIG)
    run_id = (run_dir / "wandb_id").read_text()
    time.sleep(1.1)  # wandb names an offline run's folder by the second it started: a real resume is never this quick
    run_steps(run_dir, cfg, range(3, 5), CONFIG)  # a resume from the step-3 checkpoint
    assert (run_dir / "wandb_id").read_text() == run_id

    files = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # one per start, same run id: `wandb sync` uploads them in order into one run
    first, resumed = wandb_history(files[0]), wandb_history(files[1])
    assert sorted(first) == [0, 1, 2] and sorted(resumed) == [3, 4]
    row = first[1]
    assert row["reward/mean"] == 1.0 and row["eval/pass@1"] == 0.25
    assert "learner/kl" not in row and "time/step" not in row and "empty" not in row  # non-finite, empty: left out
    assert row["rollout/samples_per_prompt"]["_type"] == "histogram"
    assert sum(row["rollout/samples_per_prompt"]["values"]) == 3  # the NaN dropped
    run = next(r.run for r in wandb_records(files[0]) if r.WhichOneof("record_type") == "run")
    assert run.run_id == run_id and run.display_name == "my-run" and run.project == "rlpost"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["algo"] == CONFIG["algo"] and config["seed"] == 3


def test_wandb_fresh_start_is_a_new_run(tmp_path, wandb_env):
    run_dir = tmp_path / "run"
    cfg = LogConfig(progress=False, tensorboard=False, wandb=True)
    run_steps(run_dir, cfg, range(0, 1))
    first = (run_dir / "wandb_id").read_text()
    run_steps(run_dir, cfg, range(0, 1))  # --no-resume: starts over at step 0
    assert (run_dir / "wandb_id").read_text() != first


def test_mlflow_local_store_run_and_resume_append_to_one_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "my-run"
    cfg = LogConfig(progress=False, tensorboard=False, mlflow=True)
    run_steps(run_dir, cfg, range(0, 3), CONFIG)
    run_id = (run_dir / "mlflow_run_id").read_text()
    run_steps(run_dir, cfg, range(3, 5), CONFIG)  # a resume from the step-3 checkpoint
    assert (run_dir / "mlflow_run_id").read_text() == run_id

    client = MlflowClient(f"sqlite:///{run_dir}/mlflow.db")
    history = client.get_metric_history(run_id, "reward/mean")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(s, float(s)) for s in range(5)]
    assert [m.value for m in client.get_metric_history(run_id, "eval/pass_1")] == [0.25] * 5  # the name made valid
    run = client.get_run(run_id)
    assert set(run.data.metrics) == {"reward/mean", "eval/pass_1"}  # no NaN, inf or distributions
    assert run.data.params == {"algo.lr": "0.1", "algo.policy_loss": "grpo", "seed": "3"}
    assert run.info.run_name == "my-run" and run.info.status == "FINISHED"
    experiment = client.get_experiment_by_name("rlpost")
    assert len(client.search_runs([experiment.experiment_id])) == 1

    run_steps(run_dir, cfg, range(0, 1))  # --no-resume: a new run
    assert (run_dir / "mlflow_run_id").read_text() != run_id
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_tensorboard_scalars_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_steps(tmp_path / "run", LogConfig(progress=False), range(0, 2))
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"histograms": 0}).Reload()
    assert [e.value for e in events.Scalars("reward/mean")] == [0.0, 1.0]
    assert "learner/kl" not in events.Tags()["scalars"]
    assert [h.histogram_value.num for h in events.Histograms("rollout/samples_per_prompt")] == [3, 3]


def test_jsonl_keeps_every_value(tmp_path):
    run_steps(tmp_path / "run", LogConfig(progress=False, tensorboard=False), range(0, 1))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["learner/kl"] is None and record["rollout/samples_per_prompt"][:2] == [1.0, 2.0]


@pytest.mark.parametrize(("key", "module", "pip"), [
    ("wandb", "wandb", "pip install wandb"),
    ("mlflow", "mlflow", "pip install mlflow-skinny"),
    ("mlflow", "sqlalchemy", "pip install sqlalchemy"),
])
def test_missing_package_is_one_line_config_error(tmp_path, monkeypatch, key, module, pip):
    monkeypatch.setitem(sys.modules, module, None)
    cfg = LogConfig(**{key: True})
    with pytest.raises(ConfigError, match=rf"^log\.{key}=true but {module}.* not installed: {pip}.*rlpost\[{key}\]") as e:
        check_sinks(cfg)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        Tracker(tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_mlflow_server_needs_no_sqlalchemy(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    check_sinks(LogConfig(mlflow=True, mlflow_uri="http://mlflow.example:5000"))
    check_sinks(LogConfig())  # nothing asked for, nothing checked
