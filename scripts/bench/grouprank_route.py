"""GroupRank's best route on this machine, end to end (issue 14): the seven block-scored SFT epochs that
took SmolLM2-135M from the base model to the DL19 reads in docs/benchmarks.md, then (with --rl) the RL stage
of `recipes/grouprank/smollm2_block.yaml` on block scores, then `rlpost rerank` on DL19 (and --dl20).

Each epoch is `rlpost sft recipes/grouprank/smollm2_block.yaml` from the last epoch's merged weights on a
fresh LoRA adapter, with the options that epoch was measured with:

    1   the base model; query-each, interval groups from DL20's BM25 top 20 (4 a query), 27 steps of 8
    2   query-each, the top 40 (8 groups a query), 54 steps of one query, no warm-up
    3-7 query-around, shuffled groups from the top 40, 54 steps of one query, no warm-up, seeds 1-5

    python scripts/bench/grouprank_route.py                    # all seven epochs, then DL19 with 3 passes
    python scripts/bench/grouprank_route.py --check 2  # also read epochs 1 and 2 with one pass

Finished epochs (their `sft/config.json`) are reused, so a stopped route goes on where it stopped. Writes
runs/bench/rerank/route-grouprank.json and prints nDCG@10 and minutes per phase."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, print_table, write_json  # noqa: E402
from rerank_pipeline import REPO, phase_minutes, rerank, timed  # noqa: E402

RECIPE = "recipes/grouprank/smollm2_block.yaml"
FIRST = ["data.task_kwargs.layout=query-each", "data.task_kwargs.grouping=interval",
         "sft.task_kwargs.top=20", "sft.task_kwargs.groups_per_query=4", "sft.steps=27"]
SECOND = ["data.task_kwargs.layout=query-each", "data.task_kwargs.grouping=interval", "sft.warmup_steps=0"]
LATER = ["sft.warmup_steps=0"]  # the recipe's own options: query-around, shuffled groups, top 40, 54 steps
EPOCHS = [FIRST, SECOND, *([*LATER, f"data.task_kwargs.seed={seed}"] for seed in range(1, 6))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=len(EPOCHS), choices=range(1, len(EPOCHS) + 1))
    parser.add_argument("--check", type=int, default=0, metavar="N", help="read the first N epochs on DL19 with one pass (6-8 min each)")
    parser.add_argument("--passes", type=int, default=3, help="shuffled passes for the last epoch's DL19 read")
    parser.add_argument("--rl", action="store_true", help="then the recipe's RL stage on block scores, read the same way")
    parser.add_argument("--dl20", action="store_true", help="also read the final model(s) on DL20, the training queries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default="runs/route-grouprank", help="one folder per epoch under it")
    parser.add_argument("--out", default="runs/bench/rerank")
    args = parser.parse_args()
    args.method, args.top, args.dtype = "grouprank", 20, "float32"  # what rerank_pipeline.rerank reads

    root, out = REPO / args.dir, REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    load = {"before": loadavg()}
    minutes: dict[str, float] = {}
    rows: list[dict] = []

    def read(model: Path, label: str, passes: int, dataset: str = "DL19") -> None:
        stem = f"route-{label.replace(' ', '-')}-{dataset.lower()}-p{passes}"
        extra = ["--group-size", "5", "--passes", str(passes)]  # layout and score_at come from the model's rlpost_task.json
        minutes[f"rerank {dataset} {label} ({passes} passes)"], metrics = rerank(args, model, dataset, stem, [0.2], extra, out)
        rows.append({"model": label, "data": dataset, "passes": passes, "nDCG@10": metrics["grouprank top 20"]["ndcg_cut_10"],
                     "hybrid 0.2": metrics["hybrid 0.2"]["ndcg_cut_10"], "BM25": metrics["first stage"]["ndcg_cut_10"]})

    model: Path | None = None
    for i, options in enumerate(EPOCHS[: args.epochs], 1):
        run = root / f"epoch{i}"
        start = [] if model is None else ["model.source=hf", f"model.path={model}"]
        log = out / f"route-epoch{i}-sft.log"
        if not (run / "sft" / "config.json").is_file():
            timed(["sft", RECIPE, *options, *start, f"run.output_dir={run}", f"run.threads={args.threads}"], log)
        if log.is_file():
            minutes[f"SFT epoch {i}"] = phase_minutes(log).get("sft", float("nan"))
        model = run / "sft"
        if i <= args.check or i == args.epochs:
            read(model, f"epoch {i}", 1 if i < args.epochs else args.passes)
    finals = [(f"epoch {args.epochs}", model)]
    if args.rl:
        run, log = root / "rl", out / "route-rl-train.log"
        if not (run / "final" / "config.json").is_file():
            timed(["train", RECIPE, "train.warm_start=none", "model.source=hf", f"model.path={model}",
                   "data.task_kwargs.seed=11", f"run.output_dir={run}", f"run.threads={args.threads}"], log)
        minutes["RL (27 steps)"] = phase_minutes(log).get("train", float("nan"))
        read(run / "final", "RL", args.passes)
        finals.append(("RL", run / "final"))
    for label, path in finals if args.dl20 else []:
        read(path, label, args.passes, "DL20")
    load["after"] = loadavg()

    print_table("GroupRank route: BM25 top 20 reranked in groups of 5, nDCG@10", rows,
                ["model", "data", "passes", "nDCG@10", "hybrid 0.2", "BM25"])
    print_table("minutes per phase", [{"phase": k, "minutes": round(v, 1)} for k, v in minutes.items()], ["phase", "minutes"])
    print(f"total: {sum(v for v in minutes.values() if v == v):.0f} minutes")
    write_json(out / "route-grouprank.json", {"epochs": args.epochs, "options": EPOCHS[: args.epochs], "rl": args.rl,
               "rows": rows, "minutes": minutes, "threads": args.threads, "load": load, "machine": machine_info()})


if __name__ == "__main__":
    main()
