"""rlpost vs TRL's GRPOTrainer: same tiny checkpoint, same prompts, reward and GRPO config.

Runs TRL 1.16 ``GRPOTrainer`` and rlpost's controller (``rlpost.controller.train``), each in a fresh
subprocess, and reports seconds per step, completions per second and the reward after N steps, as a
table and JSON. Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/vs_trl.py --repeats 3   # the recorded run (then --threads 2)
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/vs_trl.py --steps 4             # smoke
    python scripts/bench/vs_trl.py --threads 2 --repeats 2                                    # both on 2 threads

Without ``--model`` a partly trained checkpoint is made with rlpost's SFT (recipe tiny-arith-sft,
``--sft-steps`` steps ending at ``--sft-min-lr-ratio`` of the peak lr, cached by fingerprint in
``--sft-dir``, so reruns are free), and its greedy accuracy is printed. Start from a partly trained
model: from ~8% accuracy neither framework's reward moves in 50-150 steps. Do not anneal the SFT lr
to 0: that checkpoint sits in so sharp a point that any RL step lowers accuracy, in both frameworks
(docs/benchmarks.md, "why it first failed"). The default checkpoint (800 SFT steps at lr 1e-3,
min_lr_ratio 0.3) is at 68.8% greedy / 54.3% sampled accuracy.

Quality after N steps: the training reward (mean of the last 10 steps) is noisy, because each
framework draws other prompts; so both frameworks' final weights are also scored the same way on
500 held-out test prompts (greedy, and 4 samples at T=1), and reported as the mean over repeats.
Timings are noisy on a shared 2-core machine: quote ratios from one invocation, with ``--repeats``.

Settings mapping (one row per benchmark setting; "=" = same semantics on both sides)
-------------------------------------------------------------------------------------------------------
 setting (CLI)             TRL 1.16 GRPOConfig / GRPOTrainer          rlpost override (recipe quickstart)
 ------------------------  -----------------------------------------  ---------------------------------------
 checkpoint (--model)      GRPOTrainer(model=<path>),                 model.source=hf model.path=<path>
                           model_init_kwargs={dtype: float32}         (model.dtype=float32), train.warm_start=none
 prompts (train split)     Dataset{prompt: q+"=", answer}             data.task=arithmetic,
   load_task("arithmetic",  (standard, not conversational: no chat    data.task_kwargs={n_train: N},
   "train", n_train=N)      template); shuffle_dataset=True           data.template="{question}=", use_chat_template=false
 prompts/step (--prompts)  per_device_train_batch_size=P*G,           train.prompts_per_step=P
                           generation_batch_size=P*G,
                           gradient_accumulation_steps=1
                           (=> steps_per_generation=1)
 samples/prompt (--n)      num_generations=G                          rollout.n=G
 max new tokens            max_completion_length=M                    rollout.max_new_tokens=M
 sampling                  temperature=1.0, top_p=1.0, top_k=0,       rollout.temperature=1.0, top_p=1.0, top_k=0,
                           use_vllm=False (HF model.generate)         rollout.engine=hf (own KV-cache loop)
 reward                    reward_funcs=[exact_reward] (this file)    rewards=[{name: exact, fn: <this file>:exact_reward}]
                                                                      + a cheap verifier (exact_numeric, or none with
                                                                      --rlpost-verifier none); it feeds only train/accuracy
 advantage                 scale_rewards="group":                     algo.advantage=grpo (unbiased group std),
                           (r-mean_g)/(std_g+1e-4), unbiased std      algo.advantage.kwargs.eps=1e-4
 zero-variance groups      kept (advantage 0, tokens in denominator)  algo.select=[keep_all] (default here; the
                                                                      rlpost default degenerate_filter drops them,
                                                                      --rlpost-selector degenerate_filter)
 policy loss               loss_type="dapo": PPO-clip per token,      algo.policy_loss=ppo_clip,
                           epsilon=0.2 (epsilon_high=None => 0.2),    clip_low=clip_high=0.2,
                           sum over tokens / active tokens in batch   algo.aggregation=token-mean
 KL                        beta=0.0 (no reference model)              algo.kl_coef=0.0
 passes per batch          num_iterations=1 (old logps = detached     algo.epochs=1, algo.minibatches=1
                           current => ratio 1, no extra forward)      (same: no old-logprob forward)
 micro-batch               all P*G completions in one forward/backward train.micro_batch_size=P*G
 forward                   every row's prompt + completion, padded    each distinct prompt once, completions on its
                                                                      KV cache (same logprobs and gradients)
 optimizer                 AdamW (transformers default optim:         AdamW (torch.optim, fused),
                           adamw_torch_fused), betas .9/.999, eps 1e-8 betas .9/.999, eps 1e-8,
                           weight_decay=0, max_grad_norm=1.0          optim.weight_decay=0, optim.grad_clip=1.0
 learning rate (--lr)      learning_rate=lr, lr_scheduler_type=       optim.lr=lr, optim.schedule=constant,
                           "constant", warmup_steps=0                 optim.warmup_steps=0
 steps (--steps)           max_steps=steps                            train.steps=steps
 threads (--threads)       torch.set_num_threads(t) in the process    run.threads=t (driver, learner and rollout
                                                                      actors each set it), OMP_NUM_THREADS=t
 seed                      seed=s, data_seed=s                        run.seed=s
 precision                 bf16=False, fp16=False, use_cpu=True       float32 everywhere
 memory savers             gradient_checkpointing=False (TRL's        none
                           default is True)
 truncated completions     mask_truncated_completions=False           no masking (same)
 logging / saving          logging_steps=1, report_to=[],             log.progress=false, log.tensorboard=false,
                           save_strategy="no", disable_tqdm=True,     train.save_every=0 (controller still writes one
                           dataloader_num_workers=0                   checkpoint + final/ at the end: timed apart)
 eval                      none                                       train.eval_before/after=false, eval_every=0
 cluster                   one process                                cluster.mode=ray (default: driver + learner
                                                                      actor + rollout actor) or --rlpost-mode local
-------------------------------------------------------------------------------------------------------

Measurements (per framework and repeat; medians over repeats are reported):
- s/step: median step time, skipping the first ``--warmup`` (2) steps. TRL: ``on_step_begin`` ->
  ``on_step_end`` of a TrainerCallback (generation, reward, forward/backward, optimizer step).
  rlpost: ``time/step`` in metrics.jsonl (prompts -> generate -> verify/reward -> update -> weight sync).
- loop s/step: median time from one step's end to the next one's (TRL: ``on_step_end`` to
  ``on_step_end``; rlpost: one metrics log to the next), so it also counts what each framework does
  between its timed steps (logging, data loading).
- completions/s: completions per step (P*G) / median s/step.
- reward last 10 / first 5: mean training reward (fraction of exact-answer completions) over the
  last 10 and first 5 steps. TRL: ``reward`` in the log history; rlpost: ``reward/exact``.
- setup s: from ``GRPOTrainer(...)`` / ``controller.train()`` to the end of step 0, less one median
  step (TRL: model load, dataset preparation; rlpost: data, Ray start, actor spawn + model loads,
  verifier worker start. Ray builds actors asynchronously, so in rlpost's metrics.jsonl that
  start-up shows up inside step 0's ``time/step``; the first ``--warmup`` steps are never timed).
- teardown s: after the last step; rlpost writes a checkpoint and ``final/`` there, TRL saves nothing.
- process wall s: the whole child process, imports included.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Nothing heavy at import time: rlpost imports this file as a reward plug-in, and spawned verifier
# workers re-import it as their main module.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
THIS_FILE = Path(__file__).resolve()
PLACEMENTS = {"rlpost": "separate", "rlpost-colocated": "colocated"}  # --frameworks name -> cluster.placement


# ------------------------------------------------------------------------------------ the reward

def exact_reward(prompts, completions, facts=None, answer=None, **kwargs) -> list[float]:
    """1.0 if the completion's text (stripped) equals the gold answer string, else 0.0.

    Fits both contracts: TRL calls ``fn(prompts=, completions=, completion_ids=, answer=, ...)``;
    rlpost calls ``fn(prompts, completions, facts, answer=, completion_ids=, ...)``.
    """
    if answer is None:
        raise ValueError("exact_reward needs the dataset column 'answer'")
    out = []
    for completion, gold in zip(completions, answer):
        if not isinstance(completion, str):  # a TRL conversational completion: [{"role", "content"}]
            completion = completion[-1]["content"]
        out.append(1.0 if completion.strip() == str(gold).strip() else 0.0)
    return out


# ------------------------------------------------------------------------------------ CLI

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF folder of the starting checkpoint (default: make one with rlpost SFT)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-5,
                   help="AdamW lr, constant (1e-5: GRPO lifts held-out accuracy from the default checkpoint; at 5e-5 "
                        "both frameworks lowered it, docs/benchmarks.md)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=0, help="seed of repeat 0; repeat r uses seed + r")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--clip", type=float, default=0.2, help="PPO clip epsilon (both sides)")
    p.add_argument("--n-train", type=int, default=7000, help="arithmetic train-split size")
    p.add_argument("--repeats", type=int, default=1, help="alternate TRL and rlpost this many times")
    p.add_argument("--warmup", type=int, default=2, help="steps excluded from the step-time median")
    p.add_argument("--frameworks", default="trl,rlpost,rlpost-colocated",
                   help="comma list, run in this order each repeat: trl, rlpost (cluster.placement=separate), "
                        "rlpost-colocated (learner and engine in one actor)")
    p.add_argument("--rlpost-mode", choices=["ray", "local"], default="ray", help="rlpost cluster.mode")
    p.add_argument("--rlpost-selector", default="keep_all",
                   help="rlpost algo.select stage (keep_all matches TRL's loss; degenerate_filter is rlpost's default)")
    p.add_argument("--rlpost-verifier", choices=["exact_numeric", "none"], default="exact_numeric",
                   help="verifier run beside the reward (only feeds train/accuracy)")
    p.add_argument("--sft-steps", type=int, default=800,
                   help="SFT steps for the default checkpoint (800 at lr 1e-3: ~72%% greedy, ~44%% sampled)")
    p.add_argument("--sft-lr", type=float, default=1e-3, help="SFT peak lr (cosine decay over --sft-steps)")
    p.add_argument("--sft-min-lr-ratio", type=float, default=0.3,
                   help="SFT ends at this fraction of its peak lr (0 anneals to a point so sharp that any RL step hurts)")
    p.add_argument("--sft-dir", default="runs/bench/sft-ckpt-mlr03", help="where the default checkpoint is made/cached")
    p.add_argument("--no-eval", action="store_true", help="skip the greedy-accuracy eval of the checkpoint")
    p.add_argument("--out", default="runs/bench/vs_trl.json", help="JSON result; run folders go beside it")
    # internal: one phase in a fresh process
    p.add_argument("--rlpost-override", action="append", default=[],
                   help="extra rlpost override, repeatable (e.g. train.async_rollout=true)")
    p.add_argument("--only", choices=["prep", "trl", "rlpost"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench_dir(args) -> Path:
    return Path(args.out).resolve().parent


def load_records(args) -> list[dict]:
    from rlpost.data.tasks import load_task

    return load_task("arithmetic", "train", n_train=args.n_train)


# ------------------------------------------------------------------------------------ phase: prep

def phase_prep(args) -> dict:
    """Make (or reuse) the SFT checkpoint and measure its greedy accuracy with rlpost's eval."""
    import torch

    torch.set_num_threads(args.threads)
    info: dict = {}
    cfg = prep_config(args)
    if args.model:
        path = Path(args.model).resolve()
        info["source"] = "given"
    else:
        from rlpost.sft import run_sft, sft_output_dir

        cached = (sft_output_dir(cfg) / "rlpost_sft.json").is_file()
        t0 = time.perf_counter()
        path = Path(run_sft(cfg)).resolve()  # progress lines from the console
        info.update(source="rlpost sft (tiny-arith-sft)", sft_steps=args.sft_steps,
                    sft_seconds=round(time.perf_counter() - t0, 1), sft_cached=cached)
    info["model"] = str(path)
    if not args.no_eval:
        info["eval"] = safe_eval(args, cfg, path)
    return info


def prep_config(args):
    """The SFT recipe that makes the default checkpoint; its eval section scores every checkpoint."""
    from rlpost.config import load_config

    sft_dir = Path(args.sft_dir).resolve()
    return load_config("tiny-arith-sft", [
        f"run.output_dir={sft_dir.parent}/{sft_dir.name}-run",
        f"sft.output_dir={sft_dir}",
        # pinned, so the checkpoint does not move when the recipe's defaults are retuned
        f"sft.steps={args.sft_steps}",
        f"sft.lr={args.sft_lr}",
        "sft.batch_size=128",
        "sft.warmup_steps=20",
        f"sft.min_lr_ratio={args.sft_min_lr_ratio}",
        "sft.target_template='{answer}'",
        f"run.threads={args.threads}",
        f"run.seed={args.seed}",
        f"data.task_kwargs={{n_train: {args.n_train}}}",
        "verify.verifiers=[{name: ex, fn: exact_numeric}]",
        "rewards=[{name: correctness, kwargs: {verifier: ex}}]",  # the default reads 'math', which this config does not run
        "verify.num_workers=0",
        f"eval.max_new_tokens={args.max_new_tokens}",
        "eval.limit=500",
        "eval.samples=4",
        f"eval.temperature={args.temperature}",
    ])


def safe_eval(args, cfg, path: Path) -> dict:
    try:
        return eval_checkpoint(args, cfg, path)
    except Exception as e:  # the accuracy is informative only; the benchmark goes on without it
        import traceback

        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}


def eval_checkpoint(args, cfg, path: Path) -> dict:
    """Greedy and sampled accuracy on 500 test prompts with rlpost's evaluate (exact_numeric, inline)."""
    from rlpost.evaluate import evaluate
    from rlpost.models.loading import load_tokenizer
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.scoring import make_verifier_runner

    t0 = time.perf_counter()
    engine = HFEngine(path, seed=args.seed, threads=args.threads)
    runner = make_verifier_runner(cfg)
    try:
        res = evaluate(cfg, engine, load_tokenizer(path), runner)
    finally:
        runner.close()
    return {
        "split": "test", "n_prompts": res["n_prompts"], "verifier": "exact_numeric",
        "greedy_accuracy": res["greedy_accuracy"], "sample_accuracy_t1": res.get("sample_accuracy"),
        "mean_length": res["mean_length"], "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------------------ phase: TRL

def phase_trl(args, model_path: str, run_dir: Path) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.begin.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.end.append(time.perf_counter())

    import_s = time.perf_counter() - t_import
    records = load_records(args)
    dataset = Dataset.from_list([{"prompt": r["question"] + "=", "answer": r["answer"]} for r in records])
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    per_step = args.prompts * args.n
    config = GRPOConfig(
        output_dir=str(run_dir),
        # batch: one generation of P*G completions, one optimizer step per training step
        per_device_train_batch_size=per_step,
        generation_batch_size=per_step,
        gradient_accumulation_steps=1,
        num_generations=args.n,
        max_completion_length=args.max_new_tokens,
        # sampling
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        use_vllm=False,
        # loss
        loss_type="dapo",
        scale_rewards="group",
        beta=0.0,
        num_iterations=1,
        epsilon=args.clip,
        epsilon_high=args.clip,
        mask_truncated_completions=False,
        # optimizer
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        max_steps=args.steps,
        # precision, device, memory
        bf16=False,
        fp16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        model_init_kwargs={"dtype": "float32"},
        # data, logging, saving
        seed=args.seed,
        data_seed=args.seed,
        shuffle_dataset=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        log_completions=False,
    )
    timer = StepTimer()
    t0 = time.perf_counter()
    trainer = GRPOTrainer(
        model=model_path, reward_funcs=[exact_reward], args=config, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[timer],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # one printed dict per step; log_history keeps them
    trainer.remove_callback(ProgressCallback)
    torch.set_num_threads(args.threads)  # in case anything above changed it
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()
    train_s = t_end - t0
    trainer.save_model(str(run_dir / "final"))  # after the timed part: for the held-out eval only
    tokenizer.save_pretrained(str(run_dir / "final"))
    step_s = [e - b for b, e in zip(timer.begin, timer.end)]
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {
        "step_s": step_s,
        "reward": [float(h["reward"]) for h in logs],
        "mean_length": [float(h["completions/mean_length"]) for h in logs if "completions/mean_length" in h],
        "completions_per_step": [float(per_step)] * len(step_s),
        "import_s": import_s,
        "init_s": init_s,  # GRPOTrainer(...): model load, dataset preparation
        "first_step_end_s": (timer.end[0] - t0 + init_s) if timer.end else None,
        "teardown_s": (t_end - timer.end[-1]) if timer.end else None,
        "step_end_times": [t - t0 for t in timer.end],  # seconds since train() was called
        "train_call_s": train_s,
        "torch_threads": torch.get_num_threads(),
        "config": {k: getattr(config, k) for k in (
            "per_device_train_batch_size", "generation_batch_size", "steps_per_generation",
            "gradient_accumulation_steps", "num_generations", "max_completion_length", "temperature", "top_p",
            "top_k", "loss_type", "scale_rewards", "beta", "num_iterations", "epsilon", "epsilon_high",
            "learning_rate", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "optim", "max_steps", "seed",
            "bf16", "gradient_checkpointing", "use_vllm",
        )},
    }


# ------------------------------------------------------------------------------------ phase: rlpost

def rlpost_overrides(args, model_path: str, run_dir: Path) -> list[str]:
    per_step = args.prompts * args.n
    verifiers = "[]" if args.rlpost_verifier == "none" else f"[{{name: ex, fn: {args.rlpost_verifier}}}]"
    return [
        "run.name=bench-vs-trl",
        f"run.output_dir={run_dir}",
        f"run.seed={args.seed}",
        f"run.threads={args.threads}",
        "model.source=hf",
        f"model.path={model_path}",
        "model.dtype=float32",
        "data.task=arithmetic",
        f"data.task_kwargs={{n_train: {args.n_train}}}",
        "data.template='{question}='",
        "data.use_chat_template=false",
        "rollout.engine=hf",
        f"rollout.n={args.n}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        f"rollout.temperature={args.temperature}",
        "rollout.top_p=1.0",
        "rollout.top_k=0",
        f"rollout.batch_size={max(256, per_step)}",
        f"verify.verifiers={verifiers}",
        f"rewards=[{{name: exact, fn: '{THIS_FILE}:exact_reward'}}]",
        "algo.advantage=grpo",
        "algo.advantage.kwargs.eps=1e-4",
        f"algo.select=[{args.rlpost_selector}]",
        "algo.policy_loss=ppo_clip",
        f"algo.clip_low={args.clip}",
        f"algo.clip_high={args.clip}",
        "algo.aggregation=token-mean",
        "algo.kl_coef=0.0",
        "algo.epochs=1",
        "algo.minibatches=1",
        f"optim.lr={args.lr}",
        "optim.warmup_steps=0",
        "optim.schedule=constant",
        "optim.weight_decay=0.0",
        "optim.grad_clip=1.0",
        f"train.steps={args.steps}",
        f"train.prompts_per_step={args.prompts}",
        f"train.micro_batch_size={per_step}",
        "train.warm_start=none",
        "train.eval_before=false",
        "train.eval_after=false",
        "train.eval_every=0",
        "train.save_every=0",
        "train.parity_check_every=0",
        f"cluster.mode={args.rlpost_mode}",
        "log.progress=false",
        "log.tensorboard=false",
        *args.rlpost_override,
    ]


def phase_rlpost(args, model_path: str, run_dir: Path) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()
    from rlpost.config import load_config
    from rlpost.controller import train
    from rlpost.tracking import Tracker

    import_s = time.perf_counter() - t_import
    cfg = load_config("quickstart", rlpost_overrides(args, model_path, run_dir))
    # Timestamp each step's end (the controller logs once per step), to split train()'s wall time into
    # set-up, steps and tear-down (final checkpoint + final/ save); measurement only, behaviour unchanged.
    step_end_times: list[float] = []
    original_log = Tracker.log

    def timed_log(self, step, metrics):
        original_log(self, step, metrics)
        step_end_times.append(time.perf_counter())

    Tracker.log = timed_log
    t0 = time.perf_counter()
    try:
        train(cfg, resume=False)
    finally:
        t_end = time.perf_counter()
        Tracker.log = original_log
        train_s = t_end - t0
        if args.rlpost_mode == "ray":
            try:
                import ray

                if ray.is_initialized():
                    ray.shutdown()
            except ImportError:
                pass
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: r["step"])

    def col(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]

    reward_key = "reward/exact" if any("reward/exact" in r for r in rows) else "reward/mean"
    return {
        "step_s": col("time/step"),
        "reward": col(reward_key),
        "reward_key": reward_key,
        "mean_length": col("train/response_length"),
        "accuracy_verifier": col("train/accuracy"),
        "completions_per_step": col("train/completions"),
        "breakdown_s": {k: col(f"time/{k}") for k in ("gen", "verify", "reward", "old_logprob", "update", "sync", "wait")},
        "samples_trained": col("train/samples"),
        "import_s": import_s,
        # Ray actors are built asynchronously: the first generate call waits for them, so their start-up
        # (process spawn, imports, model load) lands in step 0's time/step.
        "first_step_end_s": (step_end_times[0] - t0) if step_end_times else None,
        "teardown_s": (t_end - step_end_times[-1]) if step_end_times else None,
        "step_end_times": [t - t0 for t in step_end_times],  # seconds since train() was called
        "train_call_s": train_s,
        "torch_threads": torch.get_num_threads(),
        "mode": args.rlpost_mode,
        "selector": args.rlpost_selector,
        "verifier": args.rlpost_verifier,
        "overrides": rlpost_overrides(args, model_path, run_dir),
    }


# ------------------------------------------------------------------------------------ child entry

def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def child_main(args) -> None:
    sys.path.insert(0, str(HERE))
    from common import loadavg

    quiet_libraries()

    load_before = loadavg()
    t0 = time.perf_counter()
    if args.only == "prep":
        result = phase_prep(args)
    else:
        run_dir = Path(args.run_dir).resolve()
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        fn = phase_trl if args.only == "trl" else phase_rlpost
        result = fn(args, args.model_path, run_dir)
        if not args.no_eval:  # same eval for both frameworks, on their final weights
            result["heldout"] = safe_eval(args, prep_config(args), run_dir / "final")
    result["process_body_s"] = time.perf_counter() - t0
    result["load_before"] = load_before
    result["load_after"] = loadavg()
    Path(args.result).write_text(json.dumps(result, default=str))


# ------------------------------------------------------------------------------------ parent

def forward_args(args) -> list[str]:
    """The shared settings, passed on to each child process."""
    out = []
    for name in ("steps", "prompts", "n", "max_new_tokens", "lr", "threads", "temperature", "clip", "n_train",
                 "rlpost_mode", "rlpost_selector", "rlpost_verifier", "sft_steps", "sft_lr", "sft_min_lr_ratio"):
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    # paths absolute: the children run in the repository root
    out += ["--sft-dir", str(Path(args.sft_dir).resolve()), "--out", str(Path(args.out).resolve())]
    if args.model:
        out += ["--model", str(Path(args.model).resolve())]
    if args.no_eval:
        out.append("--no-eval")
    for o in args.rlpost_override:
        out += ["--rlpost-override", o]
    return out


def run_child(args, phase: str, seed: int, extra: list[str]) -> dict:
    """Run one phase in a fresh interpreter; returns its result dict (or {"error": ...})."""
    result = bench_dir(args) / "vs_trl" / f".{phase}-result.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    cmd = [sys.executable, str(THIS_FILE), *forward_args(args), "--seed", str(seed), "--only", phase,
           "--result", str(result), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=str(REPO))
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.is_file():
        return {"error": f"{phase} exited with code {proc.returncode}", "process_wall_s": wall}
    out = json.loads(result.read_text())
    out["process_wall_s"] = wall
    result.unlink(missing_ok=True)
    return out


def summarize_run(run: dict, warmup: int) -> dict:
    from common import mean, median

    steps = len(run["step_s"])
    timed = run["step_s"][warmup:] if steps > warmup else run["step_s"]
    s_step = median(timed)
    per_step = median(run["completions_per_step"])
    rewards = run["reward"]
    ends = run.get("step_end_times") or []
    gaps = [b - a for a, b in zip(ends, ends[1:])]  # step end -> next step end: everything in the loop
    out = {
        "steps": steps,
        "s_per_step": s_step,
        "loop_s_per_step": median(gaps[max(0, warmup - 1):] or gaps),
        "completions_per_s": per_step / s_step if s_step > 0 else float("nan"),
        "completions_per_step": per_step,
        "reward_last10": mean(rewards[-10:]),
        "reward_first5": mean(rewards[:5]),
        "mean_length_last10": mean(run.get("mean_length", [])[-10:]),
        "heldout_sampled_acc": run.get("heldout", {}).get("sample_accuracy_t1"),
        "heldout_greedy_acc": run.get("heldout", {}).get("greedy_accuracy"),
        "steps_s_sum": sum(run["step_s"]),
        "train_call_s": run.get("train_call_s"),
        # start-up: from the framework call to the end of step 0, less one typical step
        "setup_s": (run["first_step_end_s"] - s_step) if run.get("first_step_end_s") is not None else None,
        "teardown_s": run.get("teardown_s"),
        "process_wall_s": run.get("process_wall_s"),
    }
    if "breakdown_s" in run:
        out["breakdown_median_s"] = {k: median(v[warmup:] if len(v) > warmup else v) for k, v in run["breakdown_s"].items()}
    return out


def aggregate(summaries: list[dict]) -> dict:
    from common import median

    keys = ["s_per_step", "loop_s_per_step", "completions_per_s", "reward_last10", "reward_first5",
            "mean_length_last10", "train_call_s", "setup_s", "teardown_s", "process_wall_s"]
    agg = {k: median(s.get(k) for s in summaries) for k in keys}
    for k in ("reward_last10", "heldout_sampled_acc", "heldout_greedy_acc"):  # quality: the mean over repeats
        vals = [s[k] for s in summaries if s.get(k) is not None]
        agg[f"{k}_mean"] = sum(vals) / len(vals) if vals else None
        agg[f"{k}_each"] = vals
    agg["steps"] = summaries[0]["steps"] if summaries else 0
    agg["completions_per_step"] = summaries[0]["completions_per_step"] if summaries else 0
    agg["repeats"] = len(summaries)
    if summaries and "breakdown_median_s" in summaries[0]:
        agg["breakdown_median_s"] = {
            k: median(s["breakdown_median_s"][k] for s in summaries) for k in summaries[0]["breakdown_median_s"]
        }
    return agg


def parent_main(args) -> int:
    sys.path.insert(0, str(HERE))
    from common import loadavg, machine_info, print_table, write_json

    load_before = loadavg()
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = set(frameworks) - set(PLACEMENTS) - {"trl"}
    if unknown:
        raise SystemExit(f"--frameworks: unknown {sorted(unknown)} (use trl, {', '.join(PLACEMENTS)})")
    print(f"vs_trl: {args.prompts} prompts x {args.n} samples, {args.max_new_tokens} new tokens, lr {args.lr}, "
          f"{args.steps} steps, {args.threads} thread(s), rlpost mode {args.rlpost_mode}, "
          f"repeats {args.repeats}, load {load_before}", flush=True)

    prep = run_child(args, "prep", args.seed, [])
    if "error" in prep:
        print(f"vs_trl: checkpoint preparation failed: {prep['error']}", file=sys.stderr)
        return 1
    model_path = prep["model"]
    ev = prep.get("eval", {})
    print(f"vs_trl: checkpoint {model_path} ({prep.get('source')}); greedy accuracy "
          f"{ev.get('greedy_accuracy', 'n/a')}, sampled (T={args.temperature}) accuracy "
          f"{ev.get('sample_accuracy_t1', 'n/a')} on {ev.get('n_prompts', 0)} test prompts", flush=True)

    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    failed = False
    for rep in range(args.repeats):
        for fw in frameworks:
            run_dir = bench_dir(args) / "vs_trl" / f"{fw}-r{rep}"
            print(f"vs_trl: repeat {rep + 1}/{args.repeats}: {fw} (seed {args.seed + rep}, load {loadavg()})", flush=True)
            phase, extra = ("trl", []) if fw == "trl" else ("rlpost", ["--rlpost-override", f"cluster.placement={PLACEMENTS[fw]}"])
            res = run_child(args, phase, args.seed + rep, ["--run-dir", str(run_dir), "--model-path", model_path, *extra])
            res["repeat"] = rep
            res["seed"] = args.seed + rep
            if "error" in res:
                failed = True
                print(f"vs_trl: {fw} failed: {res['error']}", file=sys.stderr)
            else:
                res["summary"] = summarize_run(res, args.warmup)
                s = res["summary"]
                print(f"vs_trl:   {fw}: {s['s_per_step']:.3f} s/step, {s['completions_per_s']:.0f} completions/s, "
                      f"reward first5 {s['reward_first5']:.3f} -> last10 {s['reward_last10']:.3f}, held-out "
                      f"sampled accuracy {s['heldout_sampled_acc']}, greedy {s['heldout_greedy_acc']}", flush=True)
            runs[fw].append(res)

    results = {fw: aggregate([r["summary"] for r in rs if "summary" in r]) for fw, rs in runs.items()}
    rows = []
    for fw in frameworks:
        a = results[fw]
        if not a["repeats"]:
            continue
        label = fw if fw == "trl" else f"rlpost ({args.rlpost_mode}, {PLACEMENTS[fw]})"
        rows.append({"framework": label, "s/step (median)": a["s_per_step"], "loop s/step": a["loop_s_per_step"],
                     "completions/s": a["completions_per_s"],
                     "reward last 10": a["reward_last10_mean"], "reward first 5": a["reward_first5"],
                     "held-out sampled": a["heldout_sampled_acc_mean"], "held-out greedy": a["heldout_greedy_acc_mean"],
                     "steps": a["steps"], "threads": args.threads, "repeats": a["repeats"],
                     "setup s": a["setup_s"], "teardown s": a["teardown_s"], "process wall s": a["process_wall_s"]})
    title = (f"rlpost vs TRL GRPO: {args.prompts}x{args.n} completions/step, {args.max_new_tokens} new tokens, "
             f"lr {args.lr}, steps {args.steps} (first {args.warmup} not timed)")
    print_table(title, rows, ["framework", "s/step (median)", "loop s/step", "completions/s", "reward last 10",
                              "reward first 5", "held-out sampled", "held-out greedy", "steps", "threads", "repeats",
                              "setup s", "teardown s", "process wall s"])
    print("(s/step: median over repeats of each run's median; reward and held-out accuracy: mean over repeats; "
          f"held-out: the final weights on {ev.get('n_prompts', 0)} test prompts, 4 samples at T={args.temperature}, and greedy)")

    comparison = {}
    t = results.get("trl", {})
    for fw in [f for f in frameworks if f in PLACEMENTS and results[f]["repeats"] and t.get("repeats")]:
        r = results[fw]
        speed = r["completions_per_s"] / t["completions_per_s"]

        def diff(key: str) -> float | None:
            return None if r[key] is None or t[key] is None else r[key] - t[key]

        comparison[fw] = {
            "throughput_ratio_rlpost_over_trl": speed,
            "reward_last10_diff_rlpost_minus_trl": diff("reward_last10_mean"),
            "heldout_sampled_diff_rlpost_minus_trl": diff("heldout_sampled_acc_mean"),
            "heldout_greedy_diff_rlpost_minus_trl": diff("heldout_greedy_acc_mean"),
            "meets_speed_bar": speed >= 1.5,
            "meets_reward_bar_heldout": (diff("heldout_sampled_acc_mean") or 0.0) >= 0.0,
            "meets_2x_goal": speed >= 2.0,
        }
        print(f"{fw}: throughput rlpost/TRL = {speed:.2f}x (bar 1.5x, goal 2x); reward last 10 (mean): rlpost "
              f"{r['reward_last10_mean']:.3f} vs TRL {t['reward_last10_mean']:.3f}; held-out sampled accuracy: "
              f"rlpost {r['heldout_sampled_acc_mean']} vs TRL {t['heldout_sampled_acc_mean']} (checkpoint "
              f"{ev.get('sample_accuracy_t1', 'n/a')})")
        if "breakdown_median_s" in r:
            bd = "  ".join(f"{k} {v:.3f}" for k, v in r["breakdown_median_s"].items())
            print(f"{fw} median step breakdown (s): {bd}")

    out = {
        "benchmark": "vs_trl",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "prompts_per_step": args.prompts, "samples_per_prompt": args.n, "max_new_tokens": args.max_new_tokens,
            "lr": args.lr, "steps": args.steps, "threads": args.threads, "seed": args.seed,
            "temperature": args.temperature, "clip": args.clip, "beta": 0.0, "n_train": args.n_train,
            "repeats": args.repeats, "warmup_steps_untimed": args.warmup, "rlpost_mode": args.rlpost_mode,
            "rlpost_selector": args.rlpost_selector, "rlpost_verifier": args.rlpost_verifier,
        },
        "checkpoint": prep,
        "results": results,
        "comparison": comparison,
        "runs": runs,
        "machine": machine_info(load_before, threads=args.threads),
    }
    path = write_json(args.out, out)
    print(f"vs_trl: wrote {path} (load before {load_before}, after {out['machine']['load_after']})")
    return 1 if failed else 0


if __name__ == "__main__":
    _args = parse_args()
    if _args.only:
        child_main(_args)
    else:
        sys.exit(parent_main(_args))
