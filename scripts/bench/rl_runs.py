"""Training runs for the benchmarks that compare RL methods from one SFT checkpoint: build the
checkpoint once, launch runs in their own processes (one torch thread each), run a seed's methods
side by side so they see the same load, and read their metrics back.

Standard library only, like common.py: the parent process never imports torch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent.parent

# Every run: the recipe's task and RL settings, from the shared checkpoint, in-process, one thread.
RUN = ["train.warm_start=none", "model.source=hf", "log.progress=false", "log.tensorboard=false", "cluster.mode=local",
       "run.threads=1", "train.save_every=0", "train.eval_before=false"]
TRAIN = ("import json, sys; from rlpost.config import load_config; from rlpost.controller import train; "
         "train(load_config(sys.argv[1], json.loads(sys.argv[2])), resume=False)")
TRAINED: list[Path] = []  # runs this invocation trained (not read back from an earlier one)


def env(tree: Path = REPO) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def sft_checkpoint(out: Path, recipe: str, steps: int) -> str:
    """The shared starting point: SFT on the recipe's task, built once."""
    path = out / "sft"
    if not (path / "config.json").is_file():
        code = ("import sys; from rlpost.config import load_config; from rlpost.sft import run_sft; "
                "run_sft(load_config(sys.argv[1], sys.argv[2:]))")
        args = [recipe, f"sft.steps={steps}", f"sft.output_dir={path}", "run.threads=2", f"run.output_dir={out / 'sft-run'}"]
        subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, check=True, env=env())
    return str(path)


def start(out: str, recipe: str, sft_steps: int) -> tuple[Path, list[float] | None, float, str]:
    """A benchmark's output folder, the load and clock at its start, and its shared SFT checkpoint."""
    from common import loadavg

    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    load, t0 = loadavg(), time.time()
    return folder, load, t0, sft_checkpoint(folder, recipe, sft_steps)


def eval_checkpoint(out: Path, recipe: str, model: str, overrides: list[str]) -> dict[str, Any]:
    """``rlpost eval`` of ``model`` with the recipe's evaluator (cached in ``out``): the runs' starting point."""
    path = out / "eval_eval.json"
    if not path.is_file():
        code = "import sys; from rlpost.cli import main; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, "eval", recipe, "--model", model, *overrides, f"run.output_dir={out}", "run.threads=2"],
                       cwd=REPO, check=True, env=env(), stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def launch(tree: Path, run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """``overrides[0]`` is the recipe (relative to the repository), the rest ``key=value``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "stdout.log", "w")
    recipe, rest = overrides[0], overrides[1:]
    cmd = [sys.executable, "-c", TRAIN, str(REPO / recipe), json.dumps(rest + [f"run.output_dir={run_dir}"])]
    return subprocess.Popen(cmd, cwd=tree, env=env(tree), stdout=log, stderr=subprocess.STDOUT)


def run_pair(cells: list[tuple[Path, Path, list[str]]]) -> None:
    """Run the cells (tree, run dir, overrides) side by side and fail loudly if any run failed."""
    TRAINED.extend(c[1] for c in cells)
    procs = [launch(*c) for c in cells]
    for p, (_, run_dir, _) in zip(procs, cells):
        if p.wait() != 0:
            raise SystemExit(f"run failed: {run_dir} (see {run_dir / 'stdout.log'})")


def seed_runs(folder: Path, methods: dict[str, list[str]], common: list[str], seeds: list[int], side_by_side: int = 2) -> Iterator[tuple[int, str, Path]]:
    """Per seed, the methods' runs (``side_by_side`` at a time; skipped when finished before);
    yields (seed, method, run dir)."""
    for seed in seeds:
        cells = [(REPO, folder / f"{m}-s{seed}", common + extra + [f"run.seed={seed}"]) for m, extra in methods.items()]
        todo = [c for c in cells if not (c[1] / "eval_after.json").is_file()]
        for i in range(0, len(todo), side_by_side):
            run_pair(todo[i : i + side_by_side])
        for m, (_, run_dir, _) in zip(methods, cells):
            yield seed, m, run_dir


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
