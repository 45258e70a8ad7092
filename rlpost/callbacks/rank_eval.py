"""nDCG@10 inside a reranker's RL run: the learner's current weights rerank a held-out TREC set every N steps.

    callbacks:
      - name: rank_eval
        kwargs: {method: erank, candidates: dl19, every: 5, options: [--top, "20", --dtype, bfloat16]}

Each evaluation saves the weights as a model folder and runs `rlpost rerank` on it in a child process (the
same prompts, reading and metrics as the CLI), keeps its run file, metrics and log under
<run>/rank_eval/<label>/ and drops the weights; the step's metrics get ``rank_eval/ndcg@10`` and
``rank_eval/recall@100``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rlpost import console
from rlpost.callbacks.base import CALLBACKS, Callback, CallbackContext, every
from rlpost.config import LearnerConfig


def _dataset_files(candidates: str, qrels: str | None) -> tuple[Path, Path]:
    """A shared dataset's name (dl19, dl20) or a rank_llm JSON path, and its qrels."""
    from rlpost.ranking.tasks import DATASETS, dataset_paths

    if candidates in DATASETS:
        paths = dataset_paths(candidates)
        return paths["candidates"], Path(qrels) if qrels else paths["qrels"]
    if qrels is None:
        raise ValueError(f"candidates '{candidates}' is a file: give its qrels too (or a dataset name: {', '.join(DATASETS)})")
    return Path(candidates), Path(qrels)


@CALLBACKS.register("rank_eval")
class RankEval(Callback):
    """nDCG@10 of the current weights as a reranker (``method``: erank or grouprank) on ``candidates`` (a
    dataset name or a rank_llm JSON with ``qrels``); ``options`` are more `rlpost rerank` options."""

    def __init__(self, method: str, candidates: str = "dl19", qrels: str | None = None, every: int = 0,
                 before: bool = False, after: bool = True, relevance_level: int = 2, options: list[str] | None = None) -> None:
        self.method, self.every, self.before, self.after = method, every, before, after
        self.relevance_level, self.options = relevance_level, [str(o) for o in options or []]
        self.candidates, self.qrels = _dataset_files(candidates, qrels)

    def check(self, steps: int, learner: LearnerConfig) -> None:
        from rlpost.cli import UsageError, _parse

        if self.method not in ("erank", "grouprank"):
            raise ValueError(f"method '{self.method}' is unknown (expected erank or grouprank)")
        if self.every < 0:
            raise ValueError(f"every must be >= 0, got {self.every}")
        for path in (self.candidates, self.qrels):
            if not path.is_file():
                raise ValueError(f"{path} not found")
        taken = {"--model", "--method", "--candidates", "--qrels", "--out", "--relevance-level", "--topics", "--corpus", "--run"}
        if clash := sorted(taken & {o.split("=")[0] for o in self.options}):
            raise ValueError(f"options may not set {', '.join(clash)} (the callback sets them)")
        try:
            _parse(["rerank", "--model", ".", *self.options])
        except (UsageError, SystemExit):
            raise ValueError(f"options {self.options} are not `rlpost rerank` options (see rlpost rerank --help)") from None

    def on_start(self, ctx: CallbackContext) -> None:
        if self.before:
            self.evaluate(ctx, "before")

    def after_step(self, ctx: CallbackContext) -> dict[str, float] | None:
        if not every(self.every, ctx.step) or (ctx.last and self.after):  # the last step's model is read "after"
            return None
        return self.evaluate(ctx, f"step{ctx.step + 1}")

    def on_end(self, ctx: CallbackContext) -> None:
        if self.after and ctx.progressed:
            self.evaluate(ctx, "after")

    def evaluate(self, ctx: CallbackContext, label: str) -> dict[str, float]:
        folder = ctx.run_dir / "rank_eval" / label
        model = ctx.save_model(folder / "model")
        out, log = folder / f"{self.candidates.stem}.trec", folder / "rerank.log"
        argv = ["rerank", "--model", str(model), "--method", self.method, "--candidates", str(self.candidates),
                "--qrels", str(self.qrels), "--relevance-level", str(self.relevance_level), "--out", str(out), *self.options]
        with console.phase(f"rank_eval {label} ({self.method} on {self.candidates.parent.name or self.candidates.name})", None), \
                log.open("w") as f:
            code = subprocess.call([sys.executable, "-m", "rlpost.cli", *argv], stdout=f, stderr=subprocess.STDOUT)
        shutil.rmtree(model)  # the weights: a checkpoint holds them; the run file and metrics stay
        if code:
            last = (log.read_text().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"rank_eval {label}: rlpost rerank failed (exit {code}): {last} (log: {log})")
        metrics: dict[str, Any] = json.loads(out.with_name(out.name + ".json").read_text())
        ranked = next(k for k in metrics if k.startswith(f"{self.method} top "))
        console.table(f"rank_eval {label}: nDCG@10 on {len(metrics[ranked]['per_query_ndcg_cut_10'])} queries",
                      {k: {"nDCG@10": metrics[k]["ndcg_cut_10"], "recall@100": metrics[k]["recall_100"]}
                       for k in ("first stage", ranked)})
        return {"rank_eval/ndcg@10": metrics[ranked]["ndcg_cut_10"], "rank_eval/recall@100": metrics[ranked]["recall_100"]}
