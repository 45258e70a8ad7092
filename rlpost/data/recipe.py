"""The recipe's view of data: load a split, check the columns the recipe needs, encode prompts."""
from __future__ import annotations

from typing import Any

from rlpost.config import Config
from rlpost.data.errors import DataError
from rlpost.data.loaders import require_columns
from rlpost.data.prompts import DEFAULT_TEMPLATE, format_prompt, template_columns
from rlpost.data.tasks import load_task


def needed_columns(cfg: Config, sft: bool = False) -> list[str]:
    """Columns the recipe reads: prompt template, verifiers' answer keys, SFT target template."""
    cols = set(template_columns(cfg.data.template or DEFAULT_TEMPLATE))
    for v in cfg.verify.verifiers:
        if "answer_key" in v.kwargs or v.target in ("math", "exact_numeric"):
            cols.add(v.kwargs.get("answer_key", "answer"))
    if sft:
        cols |= template_columns(cfg.sft.target_template)
    return sorted(cols)


def load_split(cfg: Config, split: str, limit: int | None = None, sft: bool = False) -> list[dict[str, Any]]:
    """Records of `split` for the recipe's task, with every column the recipe needs checked (``sft``:
    the SFT records, with ``sft.task_kwargs`` merged in and the target template's columns checked too)."""
    kwargs = {**cfg.data.task_kwargs, **(cfg.sft.task_kwargs if sft else {})}
    if limit is not None:
        kwargs["limit"] = limit
    records = load_task(cfg.data.task, split, **kwargs)
    require_columns(records, needed_columns(cfg, sft=sft), f"task '{cfg.data.task}' split '{split}'")
    return records


def encode_prompts(cfg: Config, records: list[dict[str, Any]], tokenizer) -> tuple[list[str], list[list[int]]]:
    """Prompt texts and token ids (chat template when the tokenizer has one, else the format string)."""
    texts = [
        format_prompt(r, tokenizer, cfg.data.template, cfg.data.use_chat_template, cfg.data.system_prompt)
        for r in records
    ]
    ids = tokenizer(texts, add_special_tokens=False).input_ids
    for text, toks in zip(texts, ids):
        if not toks:
            raise DataError(f"prompt {text!r} encodes to no tokens")
    return texts, ids
