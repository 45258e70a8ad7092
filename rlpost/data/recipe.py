"""The recipe's view of data: load a split, check the columns the recipe needs, encode prompts."""
from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rlpost.config import Config, ConfigError
from rlpost.data.errors import DataError
from rlpost.data.loaders import require_columns
from rlpost.data.prompts import DEFAULT_TEMPLATE, format_prompt, template_columns
from rlpost.data.tasks import TASKS, load_task
from rlpost.registry import RegistryError


TASK_RECORD = "rlpost_task.json"  # in a saved model folder: the task and kwargs its last training stage used


def save_task_record(folder: str | Path, cfg: Config, sft: bool = False) -> None:
    """Write the task and its keyword arguments (``sft``: the SFT records') beside a saved model, so that
    whoever loads it (``rlpost rerank``) can rebuild the prompts it was trained on."""
    record = {"task": cfg.data.task, "task_kwargs": task_kwargs(cfg, sft)}
    (Path(folder) / TASK_RECORD).write_text(json.dumps(record, default=str, indent=1))


def read_task_record(folder: str | Path) -> dict[str, Any]:
    """``save_task_record``'s record of a model folder ({} for a folder without one)."""
    path = Path(folder) / TASK_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def needed_columns(cfg: Config, sft: bool = False) -> list[str]:
    """Columns the recipe reads: prompt template, verifiers' answer keys, SFT target template."""
    cols = set(template_columns(cfg.data.template or DEFAULT_TEMPLATE))
    for v in cfg.verify.verifiers:
        if "answer_key" in v.kwargs or v.target in ("math", "exact_numeric"):
            cols.add(v.kwargs.get("answer_key", "answer"))
    if sft:
        cols |= template_columns(cfg.sft.target_template)
    return sorted(cols)


def task_kwargs(cfg: Config, sft: bool = False) -> dict[str, Any]:
    """The task's keyword arguments for the RL records, or (``sft``) with ``sft.task_kwargs`` merged in."""
    return {**cfg.data.task_kwargs, **(cfg.sft.task_kwargs if sft else {})}


def load_split(cfg: Config, split: str, limit: int | None = None, sft: bool = False) -> list[dict[str, Any]]:
    """Records of `split` for the recipe's task, with every column the recipe needs checked (``sft``:
    the SFT records, with ``sft.task_kwargs`` merged in and the target template's columns checked too)."""
    kwargs = task_kwargs(cfg, sft)
    task_limit = kwargs.pop("limit", None)  # load_task applies it, whatever the task takes
    where = "data.task_kwargs" + (" + sft.task_kwargs" if sft and cfg.sft.task_kwargs else "")
    kwargs = check_task_kwargs(cfg.data.task, kwargs, where)
    records = load_task(cfg.data.task, split, limit=task_limit if limit is None else limit, **kwargs)
    require_columns(records, needed_columns(cfg, sft=sft), f"task '{cfg.data.task}' split '{split}'")
    return records


def prompt_reads(records: list[dict[str, Any]], texts: list[str], ids: list[list[int]], tokenizer
                 ) -> tuple[list[list[int]] | None, list[int] | None]:
    """Where RL samples are choices in the prompt rather than generated: for records with ``rank_marks``
    (character offsets in ``question``: GroupRank's ``score_at: block``), each prompt's token positions of its
    marks and the digit tokens chosen there (the score each block end reads); (None, None) when no record has
    them (every record has them otherwise: controller.check_choices)."""
    from rlpost.ranking.slots import digit_ids, mark_positions

    if not any("rank_marks" in r for r in records):
        return None, None
    reads = []
    for i, (r, text, toks) in enumerate(zip(records, texts, ids)):
        encoded, positions = mark_positions(text, tokenizer, r["question"], r["rank_marks"])
        if encoded != list(toks):
            raise ConfigError(f"record {i}: its prompt tokenizes differently with offsets; rank_marks cannot be placed")
        reads.append(positions)
    return reads, digit_ids(tokenizer)


def check_task_kwargs(task: str, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """``kwargs`` checked against task ``task``'s signature and converted to its annotated types, or a
    ConfigError naming ``where`` (the recipe key), the kwarg and what the task takes."""
    try:
        fn = TASKS.get(task)
    except RegistryError as e:
        raise ConfigError(f"data.task: {e}") from None
    if not callable(fn):
        raise ConfigError(f"data.task '{task}' is a {type(fn).__name__}, not a function (split, **kwargs) -> records")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some callables have no signature; nothing to check
        return kwargs
    named = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][1:]
    try:
        signature.bind("split", **kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e} for task '{task}' (it takes: {', '.join(named) or 'no kwargs'})") from None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a plug-in's annotations may not resolve: its kwargs go through unchecked
        return kwargs
    out = dict(kwargs)
    for name, value in kwargs.items():
        if name not in hints:
            continue
        try:
            adapter = TypeAdapter(hints[name])
        except Exception:  # an annotation pydantic cannot check
            continue
        try:
            out[name] = adapter.validate_python(value)
        except ValidationError:
            expected = getattr(hints[name], "__name__", None) or str(hints[name]).replace("typing.", "")
            raise ConfigError(f"{where}: '{name}' of task '{task}' must be {expected} (got {value!r})") from None
    return out


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
