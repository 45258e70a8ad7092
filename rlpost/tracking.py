"""Metric sinks: jsonl always, tensorboard when installed, Weights & Biases and MLflow when the recipe asks
(log.wandb, log.mlflow; docs/tracking.md). The console's progress is rlpost.console's.

Metrics are floats; a list of floats is a distribution (the list in jsonl, a histogram in tensorboard and
W&B; MLflow has no histograms and leaves it out). NaN, None and infinities reach jsonl only."""
from __future__ import annotations

import importlib.util
import json
import math
import numbers
import re
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rlpost.config import ConfigError, LogConfig

def check_sinks(cfg: LogConfig) -> None:
    """Refuse in one line, before any model loads, a sink the recipe asks for whose packages are missing."""
    local_mlflow = ("sqlalchemy", "alembic") if cfg.mlflow_uri is None else ()  # the local store is sqlite
    for key, modules in (("wandb", ("wandb",)), ("mlflow", ("mlflow", *local_mlflow))):
        if not getattr(cfg, key):
            continue
        if missing := [m for m in modules if importlib.util.find_spec(m) is None]:
            pip = " ".join("mlflow-skinny" if m == "mlflow" else m for m in missing)
            raise ConfigError(f"log.{key}=true but {', '.join(missing)} not installed: pip install {pip} (or 'rlpost[{key}]')")


class Sink(Protocol):
    def log(self, step: int, metrics: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _scalar(v: Any) -> bool:
    return isinstance(v, numbers.Real) and math.isfinite(v)


def _finite(v: list) -> list[float]:
    """A distribution's finite values."""
    return [float(x) for x in v if _scalar(x)]


def _stored_id(path: Path, resume: bool) -> str | None:
    """The run id an earlier start of this run saved, when resuming."""
    return path.read_text().strip() if resume and path.is_file() else None


class TensorBoardSink:
    """<run dir>/tb: scalars and histograms."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            if _scalar(v):
                self.writer.add_scalar(k, v, step)
            elif isinstance(v, list) and (values := _finite(v)):  # e.g. rollout/samples_per_prompt
                self.writer.add_histogram(k, np.asarray(values), step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """One W&B run per run dir, named after it, files under <run dir>/wandb; a resume appends to the run
    whose id <run dir>/wandb_id holds."""

    def __init__(self, run_dir: Path, cfg: LogConfig, resume: bool, config: dict[str, Any] | None) -> None:
        import wandb

        self.wandb = wandb
        id_file = run_dir / "wandb_id"
        run_id = _stored_id(id_file, resume) or uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=cfg.wandb_project, name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
            mode=cfg.wandb_mode, config=config,
        )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        data: dict[str, Any] = {k: v for k, v in metrics.items() if _scalar(v)}
        data.update({k: self.wandb.Histogram(d) for k, v in metrics.items() if isinstance(v, list) and (d := _finite(v))})
        self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


def _mlflow_key(key: str) -> str:
    """MLflow allows letters, digits and _-./: and space in names: eval/pass@1 -> eval/pass_1."""
    return re.sub(r"[^\w\-./: ]", "_", key)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


class MlflowSink:
    """One MLflow run per run dir, named after it, in a local sqlite store under the run dir unless
    log.mlflow_uri says otherwise; a resume appends to the run whose id <run dir>/mlflow_run_id holds."""

    def __init__(self, run_dir: Path, cfg: LogConfig, resume: bool, config: dict[str, Any] | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        self.client = MlflowClient(cfg.mlflow_uri or f"sqlite:///{run_dir.resolve()}/mlflow.db")
        id_file = run_dir / "mlflow_run_id"
        self.run_id = _stored_id(id_file, resume)
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(cfg.mlflow_experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(cfg.mlflow_experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        id_file.write_text(self.run_id)
        # Params once, at the run's start: MLflow refuses to change a param's value, as a resume might.
        params = [Param(_mlflow_key(k), str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in _flat(config or {}).items()]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_TAGS_PER_BATCH])

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        batch = [Metric(_mlflow_key(k), float(v), now, step) for k, v in metrics.items() if _scalar(v)]
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + MAX_METRICS_PER_BATCH])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Tracker:
    def __init__(
        self, run_dir: Path, cfg: LogConfig, start_step: int = 0, config: dict[str, Any] | None = None
    ) -> None:
        """``config``: hyperparameters for W&B's run config and MLflow's params (nested dicts are flattened
        to dotted MLflow keys); a run resumed when start_step > 0."""
        check_sinks(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self._truncate_after(start_step)
        self.file = self.path.open("a")
        self.sinks: list[Sink] = []
        if cfg.tensorboard:
            try:
                self.sinks.append(TensorBoardSink(run_dir))
            except ImportError:
                pass
        if cfg.wandb:
            self.sinks.append(WandbSink(run_dir, cfg, start_step > 0, config))
        if cfg.mlflow:
            self.sinks.append(MlflowSink(run_dir, cfg, start_step > 0, config))

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records of steps the checkpoint does not include."""
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line).get("step", -1) < step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for sink in self.sinks:
            sink.log(step, metrics)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.file.close()
