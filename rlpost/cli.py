"""`rlpost train|submit|sft|eval|rerank|recipes|analyze-updates|plot`: user errors print one line and exit 2, no traceback."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn


class UsageError(Exception):
    """A malformed command line: argparse's complaint and the command's --help, on one line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _user_errors() -> tuple[type[BaseException], ...]:
    from rlpost.config import ConfigError
    from rlpost.data.errors import DataError
    from rlpost.registry import RegistryError

    return (ConfigError, DataError, RegistryError)


def _run_errors() -> tuple[type[BaseException], ...]:
    from rlpost.actors import ActorDiedError
    from rlpost.controller import NoSignalError, SyncError

    return (ActorDiedError, NoSignalError, SyncError)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes: above the console's live bars while they show."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def cmd_recipes(args) -> int:
    from rlpost.config import list_recipes

    for name, desc in list_recipes():
        print(f"{name:40s} {desc}")
    return 0


def cmd_sft(args) -> int:
    from rlpost import console
    from rlpost.config import load_config
    from rlpost.data.recipe import load_split
    from rlpost.sft import run_sft, sft_output_dir

    cfg = load_config(args.recipe, args.overrides)
    console.show_progress(cfg.log.progress)
    load_split(cfg, cfg.data.train_split, sft=True)  # fail on data problems before any model loads
    _check_writable(sft_output_dir(cfg).parent, "sft.output_dir" if cfg.sft.output_dir else "run.output_dir")
    if cfg.train.eval_after:
        _check_eval(cfg, "sft")
    out = run_sft(cfg)
    if cfg.train.eval_after:
        _eval_and_print(cfg, str(out), "sft")
    return 0


def _check_writable(folder: Path, key: str) -> None:
    """ConfigError naming ``key`` unless ``folder`` is, or can be made in, a writable folder: an output
    path that cannot be written fails before any model loads (nothing is created here)."""
    from rlpost.config import ConfigError

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {folder} ({existing} is not a writable folder)")


def _eval_output(cfg, label: str) -> Path:
    return Path(cfg.eval.output) if cfg.eval.output else cfg.output_dir / f"eval_{label}.json"


def _check_eval(cfg, label: str) -> None:
    """What evaluation needs, before any model loads: the split's records, a verifier, rewards that
    resolve (plug-in files import, kwargs fit) and a folder for the result."""
    from rlpost.config import ConfigError
    from rlpost.data.recipe import load_split
    from rlpost.scoring import recipe_rewards

    load_split(cfg, cfg.eval.split or cfg.data.eval_split, limit=cfg.eval.limit)
    if not cfg.verify.verifiers:
        raise ConfigError("verify.verifiers is empty: evaluation needs a verifier (the first one's 'correct' fact is the accuracy)")
    recipe_rewards(cfg)
    _check_writable(_eval_output(cfg, label).parent, "eval.output" if cfg.eval.output else "run.output_dir")


def _eval_and_print(cfg, model_path: str, label: str) -> dict:
    from rlpost import console
    from rlpost.evaluate import evaluate, write_result
    from rlpost.models.device import actor_device
    from rlpost.models.loading import load_tokenizer
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.scoring import make_verifier_runner

    with make_verifier_runner(cfg) as runner:  # verifier plug-ins fail here, before the model loads
        engine = HFEngine(model_path, cfg.model.dtype, seed=cfg.run.seed, batch_size=cfg.eval.batch_size, threads=cfg.run.threads,
                          device=actor_device(cfg.model.device, gpus=1))  # this process: CUDA where it sees one
        result = evaluate(cfg, engine, load_tokenizer(model_path), runner, title=f"eval {label}")
    result["model"] = model_path
    write_result(result, _eval_output(cfg, label))
    console.table(f"held-out evaluation of {model_path}", {label: result})
    console.echo(f"wrote {_eval_output(cfg, label)}")
    return result


def cmd_eval(args) -> int:
    from rlpost import console
    from rlpost.config import load_config
    from rlpost.models.loading import check_model_folder, resolve_model_path

    cfg = load_config(args.recipe, args.overrides)
    console.show_progress(cfg.log.progress)
    _check_eval(cfg, "eval")
    path = str(check_model_folder(args.model, "--model") if args.model else resolve_model_path(cfg.model))
    _eval_and_print(cfg, path, "eval")
    return 0


def cmd_train(args) -> int:
    from rlpost.config import load_config
    from rlpost.controller import train

    cfg = load_config(args.recipe, args.overrides)
    _check_writable(cfg.output_dir, "run.output_dir")
    if cfg.train.warm_start == "sft" and cfg.sft.output_dir:
        _check_writable(Path(cfg.sft.output_dir).parent, "sft.output_dir")
    train(cfg, resume=not args.no_resume)
    return 0


def cmd_submit(args) -> int:
    from rlpost.submit import submit

    return submit(args.recipe, args.overrides, address=args.address, working_dir=args.working_dir, python=args.python,
                  job_id=args.job_id, wait=not args.no_wait)


def cmd_analyze_updates(args) -> int:
    from rlpost.analyze import analyze_updates, print_report, write_report
    from rlpost.config import ConfigError
    from rlpost.models.loading import read_weights

    if args.tol < 0:
        raise ConfigError(f"--tol must be >= 0, got {args.tol}")
    a, b = read_weights(args.a), read_weights(args.b)
    try:
        report = analyze_updates(a, b, tol=args.tol, rank=not args.no_rank)
    except ValueError as e:
        raise ConfigError(f"{args.a} and {args.b}: {e}") from None
    report.update({"a": args.a, "b": args.b})
    print_report(report, args.a, args.b)
    if args.json:
        try:
            write_report(report, Path(args.json))
        except OSError as e:
            raise ConfigError(f"--json {args.json}: cannot write the report ({e.strerror})") from None
        print(f"wrote {args.json}")
    return 0


DEFAULT_CURVES = ("reward/mean", "eval/greedy_accuracy")


def _read_runs(dirs: list[str], labels: list[str] | None) -> dict[str, list[dict]]:
    """label -> metrics.jsonl records; labels default to the directory names (the paths when those clash)."""
    from rlpost.config import ConfigError
    from rlpost.plots import read_metrics

    names = [Path(d).name for d in dirs]
    labels = labels or (names if len(set(names)) == len(names) else dirs)
    if len(labels) != len(dirs) or len(set(labels)) != len(labels):
        raise ConfigError(f"--labels needs {len(dirs)} distinct labels, one per run; got: {' '.join(labels)}")
    runs = {}
    for label, d in zip(labels, dirs):
        path = Path(d) / "metrics.jsonl"
        if not path.is_file():
            raise ConfigError(f"no metrics.jsonl in {d}")
        try:
            runs[label] = read_metrics(Path(d))
        except (ValueError, OSError) as e:  # not JSON lines, not UTF-8, unreadable
            raise ConfigError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
        if not all(isinstance(r, dict) for r in runs[label]):
            raise ConfigError(f"{path}: every line must be a JSON object of metrics")
    return runs


def _require_keys(runs: dict[str, list[dict]], keys: list[str], source: str) -> None:
    """ConfigError naming the first key no run has a number for, with a few keys that exist."""
    from rlpost.config import ConfigError
    from rlpost.plots import metric_keys

    present = metric_keys(runs)
    for key in keys:
        if key not in present:
            shown = ", ".join(present[:8]) + (f", ... ({len(present)} in all)" if len(present) > 8 else "")
            raise ConfigError(f"metric {key!r} is in none of the runs' {source}; available: {shown or 'none'}")


def _front_runs(args, runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The records the front is drawn from: the metrics, or each run's eval_*.json results."""
    from rlpost.config import ConfigError
    from rlpost.plots import read_evals

    if args.front_from == "metrics":
        return runs
    out = {}
    for label, d in zip(runs, args.runs):
        try:
            out[label] = read_evals(Path(d))
        except (ValueError, OSError) as e:  # not JSON, not UTF-8, unreadable
            raise ConfigError(f"{d}: unreadable eval_*.json ({' '.join(str(e).split())})") from None
    return out


def cmd_plot(args) -> int:
    from rlpost.config import ConfigError
    from rlpost.plots import metric_keys, plot_curves, plot_front

    if args.smooth < 1:
        raise ConfigError(f"--smooth must be at least 1, got {args.smooth}")
    if args.minimize and not set(args.minimize) <= set(args.front or ()):
        raise ConfigError(f"--minimize {' '.join(args.minimize)}: only --front keys can be minimised")
    runs = _read_runs(args.runs, args.labels)
    keys = args.metrics or [k for k in DEFAULT_CURVES if k in metric_keys(runs)]
    if not keys:
        raise ConfigError(f"none of the default metrics {', '.join(DEFAULT_CURVES)} is logged; name some with --metrics")
    _require_keys(runs, keys, "metrics.jsonl")
    if args.front:
        front_runs = _front_runs(args, runs)
        _require_keys(front_runs, args.front, "metrics.jsonl" if args.front_from == "metrics" else "eval_*.json")
    out = Path(args.out)
    try:
        print(f"wrote {plot_curves(runs, keys, out, args.smooth)}")
        if args.front:
            maximize = tuple(k not in args.minimize for k in args.front)
            print(f"wrote {plot_front(front_runs, *args.front, maximize, out.with_name(out.stem + '_front' + out.suffix))}")
    except OSError as e:
        raise ConfigError(f"--out {args.out}: cannot write the plot ({e.strerror or e})") from None
    return 0


def _rerank_inputs(args) -> list[dict]:
    """The queries and candidates to rerank: --candidates; or --topics and --corpus with --run, or without it
    a BM25 first stage over the corpus (--depth documents per query)."""
    from rlpost import console
    from rlpost.config import ConfigError
    from rlpost.ranking.trec import candidates_from_run, read_candidates, read_corpus, read_run, read_topics

    if args.candidates and (args.run or args.topics or args.corpus):
        raise ConfigError("give --candidates FILE.json, or --topics and --corpus (with or without --run), not both")
    if args.candidates:
        return read_candidates(args.candidates)
    if not (args.topics and args.corpus):
        raise ConfigError("rerank needs --candidates FILE.json, or --topics (qid<TAB>query) and --corpus (BEIR corpus.jsonl), "
                          "with --run for a first stage of your own (else BM25 over the corpus)")
    if args.depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {args.depth}")
    topics, corpus = read_topics(args.topics), read_corpus(args.corpus)
    if args.run:
        return candidates_from_run(read_run(args.run), topics, corpus, args.run)
    from rlpost.ranking.bm25 import bm25_run

    with console.phase(f"BM25 over {len(corpus)} documents", None):
        run = bm25_run(corpus, topics, args.depth)
    return candidates_from_run(run, topics, corpus, "BM25")


def below(head: list[tuple[str, float]], rest: list[dict]) -> list[tuple[str, float]]:
    """A query's reranked head (docid, score), then the candidates not reranked, below every score (a run
    file's tied scores keep their order: strictly_decreasing)."""
    low = min(score for _, score in head) - 1.0
    return head + [(c["docid"], low) for c in rest]


PROMPT_FORMAT = {"layout": "query-first", "echo_words": 0, "score_at": "answer"}  # rerank options -> defaults


def prompt_format_as_trained(args, model: str) -> None:
    """Fill the prompt-format options not given (--layout, --echo-words, --score-at) from the task record the
    model folder was saved with (rlpost_task.json, for this --method), else their defaults; an option given
    that differs from the record gets a one-line note. score_at block reads without generating: --direct."""
    from rlpost import console
    from rlpost.data.recipe import read_task_record

    record = read_task_record(model)
    trained = record.get("task_kwargs", {}) if record.get("task") == args.method else {}
    for key, default in PROMPT_FORMAT.items():
        given = getattr(args, key)
        if given is None:
            setattr(args, key, trained.get(key, default))
        elif key in trained and trained[key] != given:
            console.echo(f"note: --{key.replace('_', '-')} {given} differs from the {trained[key]} this model was trained with")
    args.direct = args.direct or args.score_at == "block"


def cmd_rerank(args) -> int:
    """Rerank each query's first --top candidates, write a TREC run (the rest follow in first-stage order),
    and with --qrels compare nDCG@10 and recall with the first stage."""
    import importlib.util
    import json

    from rlpost import console
    from rlpost.config import ConfigError
    from rlpost.models.loading import check_model_folder
    from rlpost.ranking.scores import hybrid, strictly_decreasing
    from rlpost.ranking.trec import evaluate, read_qrels, write_run

    if args.top < 1 or args.batch_size < 1:
        raise ConfigError(f"--top and --batch-size must be at least 1, got {args.top} and {args.batch_size}")
    bad = [w for w in args.hybrid if not 0 <= w < 1]
    if bad:
        raise ConfigError(f"--hybrid takes the first stage's weights, each from 0 (off) to below 1, got {bad[0]:g}")
    weights = list(dict.fromkeys(w for w in args.hybrid if w > 0))
    items = _rerank_inputs(args)
    qrels = read_qrels(args.qrels) if args.qrels else None
    if qrels is not None and not set(qrels) & {i["qid"] for i in items}:
        raise ConfigError(f"--qrels {args.qrels} judges none of the {len(items)} queries to rerank")
    if qrels is not None and importlib.util.find_spec("pytrec_eval") is None:
        raise ConfigError("--qrels needs pytrec_eval: pip install 'rlpost[rerank]'")
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the run file's path")
    _check_writable(out.parent, "--out")
    model = str(check_model_folder(args.model, "--model"))
    prompt_format_as_trained(args, model)
    from rlpost.models.device import actor_device

    device = actor_device(args.device, gpus=1)  # this process: CUDA where it sees one (auto)
    if args.method == "erank":
        from rlpost.ranking.rerankers import ERankReranker

        reranker = ERankReranker(model, args.dtype, args.instruction, args.batch_size, args.max_doc_tokens, args.threads, device,
                                 layout=args.layout)
    else:
        from rlpost.ranking.rerankers import GroupRankReranker

        reranker = GroupRankReranker(model, args.dtype, args.group_size, args.passes, args.seed, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, threads=args.threads, max_doc_tokens=args.max_doc_tokens,
                                     device=device, direct=args.direct, layout=args.layout, echo_words=args.echo_words,
                                     score_at=args.score_at, placement=args.placement)
    label = f"{args.method} top {args.top}"
    runs: dict[str, dict[str, list]] = {"first stage": {}, label: {}}
    runs.update({f"hybrid {w:g}": {} for w in weights})
    # queries per call: enough prompts to fill a batch (GroupRank's generations batch only within a call)
    chunk = -(-args.batch_size // reranker.prompts_per_query(args.top))
    details = out.with_name(out.name + ".details.jsonl")  # each reranked document's score and how it was read
    every = chunk * max(1, round(len(items) / 10 / chunk))  # a multiple of chunk: the counts progress reaches
    phase = console.phase(f"rerank ({args.method}, top {args.top})", len(items), "queries", every=every)
    details.parent.mkdir(parents=True, exist_ok=True)
    with details.open("w") as log, phase as bar:
        for at in range(0, len(items), chunk):
            part = items[at : at + chunk]
            ranked = reranker.rerank_batch([(i["query"], i["candidates"][: args.top]) for i in part], qids=[i["qid"] for i in part])
            for item, scored in zip(part, ranked):
                head, rest = item["candidates"][: args.top], item["candidates"][args.top :]
                runs["first stage"][item["qid"]] = [(c["docid"], -i) for i, c in enumerate(item["candidates"])]
                runs[label][item["qid"]] = below([(s.docid, s.score) for s in scored], rest)
                first_rank = {c["docid"]: i for i, c in enumerate(head, 1)}
                log.write(json.dumps({"qid": item["qid"], "docs": [
                    {"docid": s.docid, "rank": s.rank, "score": s.score, "first_stage_rank": first_rank[s.docid], **s.details}
                    for s in scored]}) + "\n")
                first = {c["docid"]: c["score"] for c in head}
                for w in weights:
                    fused = hybrid([first[s.docid] for s in scored], [s.score for s in scored], w)
                    ordered = sorted(zip((s.docid for s in scored), map(float, fused)), key=lambda p: -p[1])
                    runs[f"hybrid {w:g}"][item["qid"]] = below(ordered, rest)
            log.flush()  # the queries done are on disk even if the run is killed
            bar.update(at + len(part))
    final = f"hybrid {args.hybrid[0]:g}" if args.hybrid[0] > 0 else label  # the run file holds the first weight given
    write_run(runs[final], out, tag=f"rlpost-{args.method}" + ("-hybrid" if final != label else ""))
    console.echo(f"wrote {out} ({len(items)} queries, {final}) and its per-document details {details.name}")
    if qrels is not None:
        rows = {}
        for label, run in runs.items():
            # the scores as written: ties nudged in order, as trec_eval reads the file
            written = {q: dict(strictly_decreasing(r)) for q, r in run.items()}
            result = evaluate(written, qrels, allow_missing=True, relevance_level=args.relevance_level)
            rows[label] = {k: v for k, v in result.items() if k != "per_query"}
            rows[label]["per_query_ndcg_cut_10"] = {q: m["ndcg_cut_10"] for q, m in result["per_query"].items()}
        console.table(f"{args.qrels}: {len(items)} queries reranked", rows)
        metrics = out.with_name(out.name + ".json")
        metrics.write_text(json.dumps({"model": model, "method": args.method, "top": args.top, **rows}, indent=2))
        console.echo(f"wrote {metrics}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except UsageError as e:
        print(f"rlpost: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", handlers=[_CurrentStderr()])
    try:
        if args.command not in ("recipes", "analyze-updates", "plot"):
            _quiet_libraries()
        return args.fn(args)
    except _user_errors() as e:
        print(f"rlpost: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    except _run_errors() as e:
        print(f"rlpost: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rlpost: interrupted", file=sys.stderr)
        return 130


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line as a Namespace (``fn``: the command), or UsageError."""
    from rlpost.ranking.prompts import LAYOUTS, SCORE_AT  # a constant: imports nothing heavy
    from rlpost.ranking.scores import PLACEMENTS

    parser = _Parser(prog="rlpost", description="RL post-training for LLMs")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("recipes", help="list recipes").set_defaults(fn=cmd_recipes)
    for name, fn, help_ in (
        ("train", cmd_train, "RL training (GRPO family) from a recipe"),
        ("sft", cmd_sft, "supervised fine-tuning from a recipe"),
        ("eval", cmd_eval, "evaluate a model on the recipe's held-out split"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("recipe", help="recipe YAML path or name under recipes/")
        p.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides")
        p.set_defaults(fn=fn)
        if name == "eval":
            p.add_argument("--model", help="model folder to evaluate (default: the recipe's model)")
        if name == "train":
            p.add_argument("--no-resume", action="store_true", help="start fresh even if a checkpoint exists")
    p = sub.add_parser("submit", help="send `rlpost train RECIPE` to a running Ray cluster as a Ray job (docs/cluster.md)")
    p.add_argument("recipe", help="recipe YAML path (relative to --working-dir) or name under recipes/")
    p.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides")
    p.add_argument("--address", help="the cluster's job server, http://HEAD:8265 (default: $RAY_ADDRESS, else the local head)")
    p.add_argument("--working-dir", default=".", help="uploaded as the job's working directory (default: here; .venv, runs, .git left out)")
    p.add_argument("--python", default="python", help="the Python on the cluster's nodes that has rlpost installed")
    p.add_argument("--job-id", help="submission id (default: Ray picks one)")
    p.add_argument("--no-wait", action="store_true", help="return once submitted, without streaming the job's log")
    p.set_defaults(fn=cmd_submit)
    p = sub.add_parser("analyze-updates", help="per-tensor update sparsity and rank between two models or checkpoints")
    p.add_argument("a", help="model folder or checkpoint before")
    p.add_argument("b", help="model folder or checkpoint after")
    p.add_argument("--tol", type=float, default=0.0, help="|delta| <= tol counts as unchanged (0: bitwise; the paper used 1e-5)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--no-rank", action="store_true", help="skip the (slower) update-rank computation")
    p.set_defaults(fn=cmd_analyze_updates, overrides=[])
    p = sub.add_parser("rerank", help="rerank first-stage candidates with an ERank or GroupRank model; write a TREC run")
    p.add_argument("--model", required=True, help="model folder (e.g. a trained reranker's final/)")
    p.add_argument("--method", choices=("erank", "grouprank"), default="erank", help="pointwise expected score, or scored groups")
    p.add_argument("--candidates", help="rank_llm JSON: [{query, hits: [{qid, docid, score, content}]}]")
    p.add_argument("--topics", help="qid<TAB>query file (with --corpus)")
    p.add_argument("--corpus", help="BEIR corpus.jsonl ({_id, title, text}): BM25 over it is the first stage unless --run")
    p.add_argument("--run", help="a first-stage TREC run of your own over --corpus, for --topics")
    p.add_argument("--depth", type=int, default=100, help="documents per query from the BM25 first stage")
    p.add_argument("--qrels", help="TREC qrels: also report nDCG@10 and recall@100 beside the first stage")
    p.add_argument("--top", type=int, default=20, help="candidates reranked per query (the rest keep their order below)")
    p.add_argument("--out", default="rerank.trec", help="TREC run to write (with --qrels, the metrics go to <out>.json beside it)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when this machine has it")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward (erank) or generations per batch (grouprank)")
    p.add_argument("--instruction", default="semantic", help="erank: relevance definition, or a key: semantic, followir, bright_stackexchange")
    p.add_argument("--layout", choices=LAYOUTS,
                   help="the prompt's order of query and document(s) (the task's layout; default: the model's rlpost_task.json, else query-first)")
    p.add_argument("--max-doc-tokens", type=int, default=256, help="documents cut to this many tokens")
    p.add_argument("--group-size", type=int, default=20, help="grouprank: documents per prompt")
    p.add_argument("--passes", type=int, default=1, help="grouprank: shuffled passes averaged (test-time scaling)")
    p.add_argument("--placement", default="shuffle", choices=PLACEMENTS,
                   help="grouprank: a fresh shuffle each pass, or rotate: every document at every place of its group once "
                   "in --group-size passes (new company each pass)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="grouprank: generation budget per group")
    p.add_argument("--direct", action="store_true",
                   help="grouprank: no generation; each member's expected score where the answer writes it (models trained without reasoning)")
    p.add_argument("--echo-words", type=int, metavar="N",
                   help="grouprank: the answer's keys repeat each document's first N words (the task's echo_words; default: as trained, else 0)")
    p.add_argument("--score-at", choices=SCORE_AT,
                   help="grouprank: read each member's score in the answer or, without generating, at its block's end in the prompt "
                   "(the task's score_at; default: as trained, else answer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hybrid", type=float, nargs="+", default=[0.0], metavar="W",
                   help="write W z(first stage) + (1 - W) z(rerank) over the reranked head (ERank's BM25 hybrid uses 0.2; 0: off); "
                   "several weights are each scored with --qrels (to choose one on queries of your own), the run file holds the first")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--relevance-level", type=int, default=1, help="binary measures count relevance >= this (TREC DL: 2)")
    p.set_defaults(fn=cmd_rerank, overrides=[])
    p = sub.add_parser(
        "plot", help="learning curves of runs, and a Pareto front of two metrics (PNG)",
        description="Learning curves (one subplot per metric, one line per run) written to --out; with --front, "
        "the Pareto front of two metrics written beside it as <out stem>_front.png. Give the RUNs first: "
        "an option taking several values would take them too.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory holding metrics.jsonl")
    p.add_argument("--metrics", nargs="+", metavar="KEY", help=f"metrics to draw (default: those of {', '.join(DEFAULT_CURVES)} logged)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per run (default: the directory names)")
    p.add_argument("--smooth", type=int, default=1, metavar="N", help="trailing moving average over N logged points (default: 1, none)")
    p.add_argument("--front", nargs=2, metavar=("X", "Y"), help="also draw the Pareto front of these two metrics over each run's steps")
    p.add_argument("--minimize", nargs="+", default=[], metavar="KEY", help="--front keys where smaller is better (default: larger is better)")
    p.add_argument("--front-from", choices=("metrics", "eval"), default="metrics",
                   help="front points from metrics.jsonl (each step) or from the runs' eval_*.json files, their keys read as eval/<key> (default: metrics)")
    p.add_argument("--out", default="plot.png", metavar="PATH", help="curves PNG (default: plot.png in the current directory); the front goes to <stem>_front.png beside it")
    p.set_defaults(fn=cmd_plot)
    # Overrides may come after options (`eval R --model M key=value`): collect the leftovers.
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see `rlpost {args.command} --help`)")
    if extra:
        args.overrides = list(args.overrides) + extra
    return args


if __name__ == "__main__":
    sys.exit(main())
