"""The ``exact_numeric`` verifier: the last number in the completion against a numeric gold."""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from verifiers.registry import VERIFIERS

_INT = r"(?:\d{1,3}(?:,\d{3})+|\d+)"  # thousands commas only in groups of three
# A sign counts only when not glued to a preceding word or number ("5-3" is 5 and 3, not -3).
_NUMBER = re.compile(rf"(?:(?<![\w.)])[-+])?(?:{_INT}(?:\.\d+|/\d+)?|\.\d+)")


def parse_number(text: str) -> float:
    """``"1,234"``, ``"-3.5"``, ``"3/4"`` (integers only), ``".5"`` -> float; ValueError for anything else."""
    cleaned = text.strip()
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"not a number: {text!r}")
    try:
        return float(Fraction(cleaned.replace(",", "")))
    except ZeroDivisionError:
        raise ValueError(f"not a number: {text!r} (zero denominator)") from None


def last_number(text: str) -> str:
    """The last number written in ``text`` as written, or ``""``."""
    matches = _NUMBER.findall(text)
    return matches[-1] if matches else ""


@VERIFIERS.register("exact_numeric")
def exact_numeric(
    completion: str, record: dict[str, Any], answer_key: str = "answer", rel_tol: float = 1e-6, whole: bool = False
) -> dict[str, Any]:
    """Whether the last number in the completion equals ``record[answer_key]`` within ``rel_tol``.

    ``whole=True``: the completion (stripped) must be that number and nothing else, so that
    echoing an arithmetic question back ("12+34" for "12+34=") is not an answer.
    A gold answer that is not a number raises (a data error, not a wrong completion).
    """
    gold = record[answer_key]
    gold_value = float(gold) if isinstance(gold, (int, float)) else parse_number(str(gold))
    parsed = completion.strip() if whole else last_number(completion)
    try:
        correct = math.isclose(parse_number(parsed), gold_value, rel_tol=rel_tol)
    except ValueError:  # no number, or a zero denominator
        correct = False
    return {"correct": correct, "parsed": parsed}
