"""The whole reranker pipeline on this machine (issue 14): `rlpost train` on a recipe (SFT on DL20, then GRPO),
then `rlpost rerank` on DL19's BM25 top K with the SFT model and with the RL model (each also fused with BM25,
ERank's hybrid), timing every phase. With --tune-hybrid each model also reranks its training queries (DL20), and
the fusion weight that scores best there is reported on DL19: a weight chosen without looking at the test set.

    python scripts/bench/rerank_pipeline.py recipes/erank/smollm2.yaml --method erank --top 20
    python scripts/bench/rerank_pipeline.py recipes/grouprank/smollm2.yaml --method grouprank --top 20 --group-size 5 --direct
    # ERank's second stage (from a finished `rlpost sft` of the recipe), then GRPO, both models on DL19 in bf16:
    python scripts/bench/rerank_pipeline.py recipes/erank/smollm2.yaml --method erank --dtype bfloat16 \
        --set model.source=hf model.path=runs/erank-smollm2/sft run.name=erank-smollm2-stage2 sft.steps=54 sft.warmup_steps=0

Writes runs/bench/rerank/pipeline-<run name>.json and prints a table of nDCG@10 and minutes per phase. A
finished training run (same run dir) is reused, so the evaluation can be rerun alone."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "retrieval"
SETS = {"DL19": (DATA / "trec-dl-2019-passage", "qrels.dl19-passage.txt"), "DL20": (DATA / "trec-dl-2020-passage", "qrels.dl20-passage.txt")}
GRID = [round(0.1 * i, 1) for i in range(1, 10)]  # --tune-hybrid's fusion weights (0: the reranker alone)


def timed(argv: list[str], log: Path) -> float:
    """Run ``rlpost`` with ``argv`` (output to ``log``); minutes taken, or exit on failure."""
    t0 = time.time()
    with log.open("w") as f:
        code = subprocess.call([sys.executable, "-m", "rlpost.cli", *argv], stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if code:
        sys.exit(f"rlpost {' '.join(argv)} failed (exit {code}); see {log}")
    return (time.time() - t0) / 60


def phase_minutes(log: Path) -> dict[str, float]:
    """Minutes of the SFT and RL phases, read from the training log's end lines ('sft: ... in m:ss')."""
    out = {}
    for line in log.read_text().splitlines():
        for phase in ("sft", "train"):
            if line.startswith(f"{phase}: ") and " in " in line:
                m, s = line.split(" in ")[1].split()[0].split(":")[-2:]
                out[phase] = int(m) + int(s) / 60
    return out


def rerank(args, model: Path, dataset: str, stem: str, weights: list[float], extra: list[str], out: Path) -> tuple[float, dict]:
    """`rlpost rerank` of ``dataset``'s BM25 top ``args.top`` with ``model``, fused at each of ``weights``;
    (minutes, the metrics it wrote beside <out>/<stem>.trec)."""
    folder, qrels = SETS[dataset]
    trec = out / f"{stem}.trec"
    minutes = timed(
        ["rerank", "--model", str(model), "--method", args.method, "--candidates", str(folder / "bm25_top100.rank_llm.json"),
         "--qrels", str(folder / qrels), "--top", str(args.top), "--out", str(trec), "--hybrid", *map(str, weights),
         "--relevance-level", "2", "--threads", str(args.threads), "--dtype", args.dtype, *extra], out / f"{stem}-rerank.log")
    return minutes, json.loads(trec.with_name(trec.name + ".json").read_text())


def row(metrics: dict) -> dict:
    return {"nDCG@10": metrics["ndcg_cut_10"], "recall@100": metrics.get("recall_100")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--method", choices=("erank", "grouprank"), required=True)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--group-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hybrid", type=float, default=0.2)
    parser.add_argument("--direct", action="store_true", help="grouprank: expected scores at the answer's slots, no generation")
    parser.add_argument("--tune-hybrid", action="store_true", help="choose the fusion weight on the training queries (DL20)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="rerank precision")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="recipe overrides, as `rlpost train` takes them")
    parser.add_argument("--run-dir", help="the training run's folder (default: the recipe's)")
    parser.add_argument("--out", default="runs/bench/rerank")
    args = parser.parse_args()

    from rlpost.config import load_config
    from rlpost.data.recipe import task_kwargs

    overrides = [*args.set, *([f"run.output_dir={args.run_dir}"] if args.run_dir else [])]
    cfg = load_config(args.recipe, overrides)
    run = Path(args.run_dir) if args.run_dir else cfg.output_dir
    out = REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    load = {"before": loadavg()}
    minutes: dict[str, float] = {}
    train_log = out / f"{cfg.run.name}-train.log"
    if not (run / "final" / "config.json").is_file():
        minutes["train (all)"] = timed(["train", args.recipe, *overrides], train_log)
    if train_log.is_file():  # also when a finished run is reused
        minutes.update(phase_minutes(train_log))
    rows, results = {}, {}
    extra = ["--group-size", str(args.group_size), "--max-new-tokens", str(cfg.rollout.max_new_tokens),
             *(["--direct"] if args.direct else [])] if args.method == "grouprank" else []
    weights = [args.hybrid, *(GRID if args.tune_hybrid else [])]
    label = f"{args.method} top {args.top}"
    for stage, model in (("SFT", run / "sft"), ("SFT + RL", run / "final")):
        name = f"{cfg.run.name}-{stage.replace(' + ', '-').lower()}"
        # the prompt layout (and GroupRank's answer keys) the stage last trained on (SFT's records may set their own)
        kwargs = task_kwargs(cfg, sft=stage == "SFT")
        layout = ["--layout", kwargs.get("layout", "query-first"),
                  *(["--echo-words", str(kwargs.get("echo_words", 0)), "--score-at", kwargs.get("score_at", "answer")]
                    if args.method == "grouprank" else [])]
        minutes[f"rerank DL19 ({stage})"], metrics = rerank(args, model, "DL19", name, weights, extra + layout, out)
        results[stage] = metrics
        rows["BM25"] = row(metrics["first stage"])
        rows[f"{stage}: {label}"] = row(metrics[label])
        if args.hybrid:
            rows[f"{stage}: hybrid {args.hybrid:g}"] = row(metrics[f"hybrid {args.hybrid:g}"])
        if args.tune_hybrid:
            minutes[f"rerank DL20 ({stage})"], train = rerank(args, model, "DL20", f"{name}-dl20", weights, extra + layout, out)
            results[f"{stage} on DL20"] = train
            best = max([label, *(f"hybrid {w:g}" for w in GRID)], key=lambda k: train[k]["ndcg_cut_10"])
            rows[f"{stage}: {best} (chosen on DL20: {train[best]['ndcg_cut_10']:.4f})"] = row(metrics[best])
    load["after"] = loadavg()
    print_table(f"{cfg.run.name}: DL19, BM25 top {args.top} reranked", [{"ranking": k, **v} for k, v in rows.items()],
                ["ranking", "nDCG@10", "recall@100"])
    print_table("minutes per phase", [{"phase": k, "minutes": round(v, 1)} for k, v in minutes.items()], ["phase", "minutes"])
    write_json(out / f"pipeline-{cfg.run.name}.json", {
        "recipe": args.recipe, "overrides": overrides, "method": args.method, "dtype": args.dtype, "top": args.top, "direct": args.direct, "tune_hybrid": args.tune_hybrid, "rows": rows, "minutes": minutes,
        "results": results, "threads": args.threads, "load": load, "machine": machine_info(),
    })


if __name__ == "__main__":
    main()
