"""The ``expression`` verifier: the completion is an arithmetic expression of the allowed form whose
value is the gold answer (for tasks with many correct answers, such as ``target``)."""
from __future__ import annotations

import re
from typing import Any

from verifiers.registry import VERIFIERS

_EXPRESSION = re.compile(r"\d+(?:[-+*]\d+)*")


def expression_value(text: str) -> int:
    """Value of ``"12+34-5*6"`` (non-negative integers, + - *) with the usual precedence; ValueError otherwise."""
    if not _EXPRESSION.fullmatch(text):
        raise ValueError(f"not an expression of integers and + - *: {text!r}")
    nums = [int(x) for x in re.findall(r"\d+", text)]
    total, sign, term = 0, 1, nums[0]
    for op, n in zip(re.findall(r"[-+*]", text), nums[1:]):
        if op == "*":
            term *= n
        else:
            total += sign * term
            sign, term = (1 if op == "+" else -1), n
    return total + sign * term


@VERIFIERS.register("expression")
def expression(
    completion: str, record: dict[str, Any], answer_key: str = "answer", terms: int | None = None, ops: str = "+-*"
) -> dict[str, Any]:
    """Whether the whole completion (stripped) is an expression of integers joined by ``ops`` with
    exactly ``terms`` operands (any number >= 2 when None) whose value equals ``record[answer_key]``.

    A bare number is not an expression: writing the target back is not an answer.
    """
    text = completion.strip()
    used = re.findall(r"[-+*]", text)
    well_formed = bool(used) and all(op in ops for op in used) and (terms is None or len(used) == terms - 1)
    try:
        value = expression_value(text) if well_formed else None
    except ValueError:
        value = None
    return {"correct": value is not None and value == int(record[answer_key]), "parsed": text, "well_formed": value is not None}
