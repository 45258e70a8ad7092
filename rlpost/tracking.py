"""Metric sinks: jsonl always, tensorboard when installed, a progress bar on the console.

Metrics are floats; a list of floats is a distribution (a histogram in tensorboard, the list in jsonl)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rlpost.config import LogConfig

CONSOLE_KEYS = ("reward/mean", "train/accuracy", "train/response_length", "learner/kl", "time/step")


class Tracker:
    def __init__(self, run_dir: Path, cfg: LogConfig, total_steps: int, start_step: int = 0) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self._truncate_after(start_step)
        self.file = self.path.open("a")
        self.tb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                pass
        self.progress = None
        if cfg.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]rlpost"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")
            self.progress.start()

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
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
                elif isinstance(v, list) and v:  # a distribution, e.g. rollout/samples_per_prompt
                    self.tb.add_histogram(k, np.asarray(v, dtype=np.float64), step)
        if self.progress is not None:
            info = "  ".join(f"{k.split('/')[-1]}={metrics[k]:.3g}" for k in CONSOLE_KEYS if k in metrics)
            self.progress.update(self.task, completed=step + 1, info=info)

    def print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()
        self.file.close()
