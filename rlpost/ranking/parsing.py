"""Reading rerankers' outputs. A malformed output is a fact (None, or False for the tags), never an error.

ERank answers ``<think>...</think><answer>7</answer>`` with one integer 0..10. GroupRank answers
``<reason>...</reason><answer>```json {"[1]": 8, ...}```</answer>``: strictly for training (the format reward
needs to know exactly what is wrong) and leniently for inference (repairs, like the upstream code). With
``score_at: block`` an RL sample is the digits chosen at the block ends, joined by spaces."""
from __future__ import annotations

import json
import re
from typing import Any

_ERANK_SCORE = re.compile(r"(10|[0-9])")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_GROUP_TAGS = re.compile(r"<reason>.*?</reason>\s*<answer>(.*?)</answer>", re.S)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_KEY = re.compile(r"^\[?(\d+)\]?(?:\s.*)?$", re.S)  # "[k]", "k", or either then the document's first words
_STRICT_KEY = re.compile(r"^\[(\d+)\](?: .*)?$", re.S)


def parse_erank(text: str) -> int | None:
    """The integer 0..10 of exactly one ``<answer>`` block (after ``</think>`` when there is one), else None."""
    text = text.strip()
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    match = _ANSWER.search(text)
    if match is None or ("</think>" in text and text.rfind("</think>") > match.start()):
        return None
    content = match.group(1).strip()
    return int(content) if _ERANK_SCORE.fullmatch(content) else None


def parse_grouprank(text: str, size: int) -> tuple[bool, list[int] | None]:
    """Strict: (tags ok, the scores of documents 1..size or None). Tags ok: one ``<reason>`` then one
    ``<answer>`` block and nothing but whitespace outside them. Scores: the answer's last json fence (else its
    last ``{...}``) is an object whose keys are exactly "[1]".."[size]", each once, with integers 0..10 (a key
    may go on with a space and the document's first words: "[3] The Manhattan Project")."""
    text = text.strip()
    tags = all(text.count(t) == 1 for t in ("<reason>", "</reason>", "<answer>", "</answer>"))
    match = _GROUP_TAGS.fullmatch(text) if tags else None
    if match is None:
        return False, None
    obj = _json_object(_last_object(match.group(1)), strict=True)
    if not isinstance(obj, dict):
        return True, None
    keys = [_STRICT_KEY.match(k) for k in obj]
    numbers = [int(k.group(1)) if k else 0 for k in keys]
    if sorted(numbers) != list(range(1, size + 1)):
        return True, None
    values = [v for _, v in sorted(zip(numbers, obj.values()))]
    if not all(type(v) is int and 0 <= v <= 10 for v in values):
        return True, None
    return True, values


def parse_block_scores(text: str, size: int) -> list[float] | None:
    """The scores of a GroupRank sample chosen at the block ends (``score_at: block``): ``size`` digits joined
    by spaces, each worth what block scoring reads it as (a "1" is 10 on the 0..10 scale: rank_loss.digit_values);
    None when the count or a digit is wrong."""
    from rlpost.algos.rank_loss import digit_values

    parts = text.split()
    if len(parts) != size or not all(p.isdigit() and len(p) == 1 for p in parts):
        return None
    values = digit_values()
    return [values[int(p)] for p in parts]


def parse_grouprank_lenient(text: str, size: int) -> dict[int, float]:
    """Inference: {document number 1..size: score in [0, 10]} from whatever can be read. Repairs a doubled
    bracket (``"[7]]"``) and a missing closing brace; keys ``"[k]"``, ``"k"`` or ``k``; values int, float or a
    numeric string, clipped to [0, 10]. Documents it does not name get no score; {} when nothing parses."""
    answer = _ANSWER.search(text)
    span = _last_object(answer.group(1) if answer else text)
    repaired = re.sub(r"\]\]+\"", ']"', " ".join(span.split()))
    if repaired.count("{") > repaired.count("}"):
        repaired += "}"
    obj = _json_object(repaired, strict=False)
    pairs = obj.items() if isinstance(obj, dict) else re.findall(r'"?\[?(\d+)\]?"?\s*:\s*"?(-?\d+(?:\.\d+)?)"?', repaired)
    out: dict[int, float] = {}
    for key, value in pairs:
        k, v = _key(key), _number(value)
        if k is not None and 1 <= k <= size and v is not None:
            out[k] = min(10.0, max(0.0, v))
    return out


def _last_object(text: str) -> str:
    """The last json fence's content, else the text from the last ``{`` to its last ``}`` (or to the end)."""
    fences = _FENCE.findall(text)
    if fences:
        return fences[-1].strip()
    start = text.rfind("{")
    if start < 0:
        return ""
    end = text.rfind("}")
    return text[start : end + 1] if end > start else text[start:]


def _json_object(text: str, strict: bool) -> Any:
    """json.loads(text), None when it fails; strict: duplicate keys fail too."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if strict and len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate key")
        return dict(items)

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except ValueError:
        return None


def _key(key: Any) -> int | None:
    match = _KEY.match(str(key).strip())
    return int(match.group(1)) if match else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
