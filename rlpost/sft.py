"""Supervised fine-tuning on the Learner actor: cross-entropy on completion tokens only, with the learner's
update modes (full weights or a LoRA adapter, merged when saved), micro-batches and precision; saves an HF
folder that transformers and vLLM load. Used for warm starts and by the reranker recipes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from rlpost import console
from rlpost.actors import spawn, start_cluster
from rlpost.config import Config, ConfigError
from rlpost.data import PromptDataset, render_template
from rlpost.data.recipe import encode_prompts, load_split
from rlpost.learner.learner import Learner
from rlpost.placement import check_resources
from rlpost.models.loading import load_tokenizer, resolve_model_path


def sft_fingerprint(cfg: Config) -> str:
    """Hash of everything that determines the SFT result (reuse a finished SFT run if equal)."""
    blob = json.dumps(
        {"model": cfg.model.model_dump(), "data": cfg.data.model_dump(), "sft": cfg.sft.model_dump(exclude={"output_dir", "log_every"}), "seed": cfg.run.seed,
         "tokenizer": 2},  # 2: the tiny models' tokenizer keeps whitespace; older SFT folders lost it
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sft_output_dir(cfg: Config) -> Path:
    return Path(cfg.sft.output_dir) if cfg.sft.output_dir else cfg.output_dir / "sft"


def run_sft(cfg: Config) -> Path:
    """Train, save and return the SFT folder; reuses it when a finished run has the same fingerprint.
    Progress on the console: loss and lr, every sft.log_every steps when the output is not a terminal."""
    out = sft_output_dir(cfg)
    stamp = out / "rlpost_sft.json"
    fingerprint = sft_fingerprint(cfg)
    if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        console.echo(f"sft: reusing {out} (trained with the same settings)")
        return out

    records = load_split(cfg, cfg.data.train_split, sft=True)
    check_resources(cfg.cluster, cfg.model, actors=1)
    base = str(resolve_model_path(cfg.model))
    tokenizer = load_tokenizer(base)
    _, prompt_ids = encode_prompts(cfg, records, tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    target_ids = [
        tokenizer(render_template(cfg.sft.target_template, r), add_special_tokens=False).input_ids + eos
        for r in records
    ]
    sc = cfg.sft
    prompt_ids, target_ids = within_cutoff(prompt_ids, target_ids, sc.max_length)
    data = PromptDataset(list(range(len(prompt_ids))), seed=cfg.run.seed)
    with console.phase(f"start the SFT learner ({cfg.cluster.mode}, {sc.update} weights)", None):
        start_cluster(cfg.cluster)
        learner = spawn(Learner, cfg.cluster, "sft learner", sft_learner_config(cfg), base, num_gpus=cfg.cluster.learner_gpus)
        learner.call("ready")
    try:
        with console.phase("sft", sc.steps, "steps", every=sc.log_every) as bar:
            for step in range(sc.steps):
                idx = [i for i, _ in data.next_batch(sc.batch_size)]
                m = learner.call("sft_step", [(prompt_ids[i], target_ids[i]) for i in idx])
                bar.update(step + 1, f"loss {m['loss']:.4g}  lr {m['lr']:.3g}")
        learner.call("save_hf", str(out))
    finally:
        learner.kill()
    console.echo(f"sft: saved {out}")
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "steps": sc.steps, "base": str(base)}))
    return out


def sft_learner_config(cfg: Config) -> Config:
    """The recipe as the SFT learner sees it: the sft section's optimizer (AdamW, cosine), update mode,
    steps and micro-batch; no KL term, one pass per step."""
    sc = cfg.sft
    optim = cfg.optim.model_copy(update={
        "name": "adamw", "lr": sc.lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": sc.weight_decay,
        "warmup_steps": sc.warmup_steps, "schedule": "cosine", "min_lr_ratio": sc.min_lr_ratio, "grad_clip": sc.grad_clip,
    })
    return cfg.model_copy(update={
        "optim": optim,
        "learner": cfg.learner.model_copy(update={"update": sc.update}),
        "algo": cfg.algo.model_copy(update={"kl_coef": 0.0, "epochs": 1, "minibatches": 1}),
        "train": cfg.train.model_copy(update={"steps": sc.steps, "micro_batch_size": sc.micro_batch_size or sc.batch_size}),
    })


def within_cutoff(prompts: list[list[int]], targets: list[list[int]], max_length: int | None) -> tuple[list, list]:
    """The examples whose prompt + target fit in ``max_length`` tokens; how many were left out goes to the console."""
    if max_length is None:
        return prompts, targets
    keep = [i for i, (p, t) in enumerate(zip(prompts, targets)) if len(p) + len(t) <= max_length]
    if not keep:
        shortest = min(len(p) + len(t) for p, t in zip(prompts, targets))
        raise ConfigError(f"sft.max_length={max_length}: every SFT example is longer (the shortest has {shortest} tokens)")
    if len(keep) < len(prompts):
        console.echo(f"sft: {len(prompts) - len(keep)} of {len(prompts)} examples are longer than sft.max_length={max_length} tokens, left out")
    return [prompts[i] for i in keep], [targets[i] for i in keep]


def save_hf_folder(model, tokenizer, out: Path) -> None:
    """Write model + tokenizer to `out` atomically (a crash leaves the previous folder intact)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # in an actor too: its bar would interleave with the driver's lines
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
