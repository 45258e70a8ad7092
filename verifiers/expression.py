"""The ``expression`` verifier: the completion is an arithmetic expression of the allowed form whose
value is the gold answer (for tasks with many correct answers, such as ``target``)."""
from __future__ import annotations

import re
from typing import Any

from rlpost.data.tasks import expression_value
from verifiers.registry import VERIFIERS


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
