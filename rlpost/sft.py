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
from rlpost.config import Config, ConfigError, SFTConfig
from rlpost.data import PromptDataset, render_template
from rlpost.data.recipe import encode_prompts, load_split, save_task_record
from rlpost.learner.learner import Learner
from rlpost.learner.modes import check_update_mode
from rlpost.models.loading import load_tokenizer, resolve_model_path
from rlpost.placement import check_resources
from rlpost.ranking.slots import mark_positions, score_slots
from rlpost.types import SFTExample


_NOT_IN_FINGERPRINT = {"output_dir", "log_every"}  # point_weight too while 0, so folders from before it still match


def sft_fingerprint(cfg: Config) -> str:
    """Hash of everything that determines the SFT result (reuse a finished SFT run if equal)."""
    blob = json.dumps(
        {"model": cfg.model.model_dump(), "data": cfg.data.model_dump(), "sft": cfg.sft.model_dump(exclude=_NOT_IN_FINGERPRINT | ({"point_weight"} if not cfg.sft.point_weight else set())), "seed": cfg.run.seed,
         **({"lora": cfg.learner.lora.model_dump()} if cfg.sft.update == "lora" else {}),
         # 2: the ranking term reads a record's rank_answer where it has one (GroupRank's zero-filled answer)
         **({"rank_reads": 2} if cfg.sft.rank_weight > 0 else {}),
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
    learner_cfg = sft_learner_config(cfg)
    try:
        check_update_mode(learner_cfg, base)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    examples, data = sft_stream(cfg, records, load_tokenizer(base))
    sc = cfg.sft
    with console.phase(f"start the SFT learner ({cfg.cluster.mode}, {sc.update} weights)", None):
        start_cluster(cfg.cluster)
        learner = spawn(Learner, cfg.cluster, "sft learner", learner_cfg, base, num_gpus=cfg.cluster.learner_gpus)
        learner.call("ready")
    try:
        with console.phase("sft", sc.steps, "steps", every=sc.log_every) as bar:
            for step in range(sc.steps):
                idx = [i for i, _ in data.next_batch(sc.batch_size)]
                m = learner.call("sft_step", [examples[i] for i in idx])
                rank = f"  rank {m['rank']:.4g} ({m['rank_pairs']} pairs)" if "rank" in m else ""
                rank += f"  point {m['point']:.4g}" if "point" in m else ""
                bar.update(step + 1, f"loss {m['loss']:.4g}{rank}  lr {m['lr']:.3g}")
        learner.call("save_hf", str(out))
        save_task_record(out, cfg, sft=True)
    finally:
        learner.kill()
    console.echo(f"sft: saved {out}")
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "steps": sc.steps, "base": str(base)}))
    return out


def sft_stream(cfg: Config, records: list[dict], tokenizer) -> tuple[list[SFTExample], PromptDataset]:
    """The SFT examples within ``sft.max_length`` and the stream that batches them (with the ranking term a
    batch holds whole ranking groups, e.g. an ERank query's candidates)."""
    prompt_texts, prompt_ids = encode_prompts(cfg, records, tokenizer)
    examples = within_cutoff(sft_examples(cfg.sft, records, prompt_ids, tokenizer, prompt_texts), cfg.sft.max_length)
    cohort = "group" if cfg.sft.rank_weight > 0 else None
    return examples, PromptDataset([{"group": e.group} for e in examples], seed=cfg.run.seed, cohort=cohort)


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


def sft_examples(sc: SFTConfig, records: list[dict], prompt_ids: list[list[int]], tokenizer,
                 prompt_texts: list[str] | None = None) -> list[SFTExample]:
    """Each record's prompt and rendered target (then EOS); with ``sc.rank_weight``, also the target's score
    slots (``sc.rank_pattern``'s matches, one per ``rank_gains`` entry) and its ranking group (``rank_group``).
    A record with ``rank_answer`` has its slots read in that answer, rendered with the same template, instead:
    the answer inference reads scores from (GroupRank's direct scoring fills every score with 0; under the
    gold answer each score would follow the gold scores before it, which inference never sees). A record
    with ``rank_marks`` (character offsets in its ``question``, e.g. GroupRank's block ends) has them read in
    the prompt (``prompt_texts``, the rendered prompts): slots <= 0, counted from the target's first token."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    groups: dict[str, int] = {}
    out = []
    for i, (r, p) in enumerate(zip(records, prompt_ids)):
        text = render_template(sc.target_template, r)
        if sc.rank_weight <= 0:
            out.append(SFTExample(p, tokenizer(text, add_special_tokens=False).input_ids + eos))
            continue
        if "rank_gains" not in r or "rank_group" not in r:
            raise ConfigError(f"sft.rank_weight needs records with rank_gains and rank_group (a reranking task); SFT record {i} has: {', '.join(r)}")
        ids, slots = score_slots(text, tokenizer, sc.rank_pattern, expected=len(r["rank_gains"]))
        rank_ids = []
        if "rank_marks" in r:
            marked, positions = mark_positions(prompt_texts[i], tokenizer, r["question"], r["rank_marks"])
            if marked != list(p):
                raise ConfigError(f"SFT record {i}: its prompt tokenizes differently with offsets; rank_marks cannot be placed")
            slots = [q + 1 - len(p) for q in positions]  # the position predicting token q + 1, from the target's start
        elif "rank_answer" in r:
            ranked = render_template(sc.target_template, {**r, "answer": r["rank_answer"]})
            rank_ids, slots = score_slots(ranked, tokenizer, sc.rank_pattern, expected=len(r["rank_gains"]))
        group = groups.setdefault(str(r["rank_group"]), len(groups))
        out.append(SFTExample(p, ids + eos, slots, [float(g) for g in r["rank_gains"]], group, rank_ids))
    return out


def within_cutoff(examples: list[SFTExample], max_length: int | None) -> list[SFTExample]:
    """The examples whose prompt + target fit in ``max_length`` tokens; how many were left out goes to the console."""
    if max_length is None:
        return examples
    keep = [e for e in examples if len(e.prompt_ids) + len(e.target_ids) <= max_length]
    if not keep:
        shortest = min(len(e.prompt_ids) + len(e.target_ids) for e in examples)
        raise ConfigError(f"sft.max_length={max_length}: every SFT example is longer (the shortest has {shortest} tokens)")
    if len(keep) < len(examples):
        console.echo(f"sft: {len(examples) - len(keep)} of {len(examples)} examples are longer than sft.max_length={max_length} tokens, left out")
    return keep


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
