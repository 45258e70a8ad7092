"""Score slots: the token positions where a target or a completion writes each score's first digit. SFT's
ranking term trains the digit distribution there; GroupRank's direct scoring reads its expectation there."""
from __future__ import annotations

import re

from rlpost.config import ConfigError

# Numbers neither in brackets nor in a JSON key: the values of {"[1]": 7, ...} or {"[1] In 1990 the": 7, ...},
# or <answer>7</answer>.
SCORE_PATTERN = r'(?<![\[\d])\d+(?![\]\d])(?![^"]*":)'


def digit_ids(tokenizer) -> list[int]:
    """The token of each digit 0..9 written alone; ConfigError when the tokenizer does not have one per digit."""
    ids = [tokenizer(str(d), add_special_tokens=False).input_ids for d in range(10)]
    if any(len(t) != 1 for t in ids):
        raise ConfigError(f"score slots need each digit as one token; this tokenizer writes them as {ids}")
    return [t[0] for t in ids]


def score_slots(text: str, tokenizer, pattern: str | None = None, expected: int | None = None) -> tuple[list[int], list[int]]:
    """(token ids of ``text``, the position of the first digit of each ``pattern`` match); ConfigError when
    the count differs from ``expected`` or a match's first digit is not a token of its own."""
    pattern = pattern or SCORE_PATTERN
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [m.start() for m in re.finditer(pattern, text)]
    if expected is not None and len(starts) != expected:
        raise ConfigError(f"score pattern {pattern!r} finds {len(starts)} scores in {text!r}, expected {expected}")
    digits = digit_ids(tokenizer)
    slots = []
    for c in starts:
        slot = next((t for t, (a, b) in enumerate(enc.offset_mapping) if a <= c < b), None)
        if slot is None or enc.input_ids[slot] != digits[int(text[c])]:
            raise ConfigError(f"the score at character {c} of {text!r} is not a digit token of its own in this tokenizer")
        slots.append(slot)
    return list(enc.input_ids), slots


def mark_positions(text: str, tokenizer, part: str, marks: list[int]) -> tuple[list[int], list[int]]:
    """(token ids of ``text``, the position of the token holding each character offset ``marks`` of ``part``,
    a substring of ``text``: e.g. GroupRank's block ends in its user message, within the rendered prompt);
    ConfigError when ``text`` does not contain ``part``."""
    base = text.find(part)
    if base < 0:
        raise ConfigError(f"the prompt does not contain the message whose positions are marked ({part[:60]!r}...): "
                          "score_at: block needs data.template to keep the question as it is")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    positions = []
    for m in marks:
        c = base + m
        token = next((t for t, (a, b) in enumerate(enc.offset_mapping) if a <= c < b), None)
        if token is None:
            raise ConfigError(f"character {m} of the marked message ({part[max(m - 20, 0):m + 1]!r}) falls in no token of this tokenizer's offsets")
        positions.append(token)
    return list(enc.input_ids), positions
