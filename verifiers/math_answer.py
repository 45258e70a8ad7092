"""The ``math`` verifier: symbolic answer equivalence with math-verify."""
from __future__ import annotations

import functools
import logging
from typing import Any

from math_verify import parse, verify

from verifiers.registry import VERIFIERS


class _DropTimeoutDisabledWarning(logging.Filter):
    # math-verify warns once per process that timeouts are off; VerifierRunner enforces them,
    # and every respawned worker would repeat the warning.
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list[Any]:
    # A bare "\frac{1}{\sqrt{2}}" parses to nothing: math-verify's LaTeX extraction needs delimiters.
    text = gold if ("$" in gold or "\\boxed" in gold) else f"${gold}$"
    parsed = parse(text, parsing_timeout=None)
    if not parsed:
        raise ValueError(f"gold answer {gold!r} does not parse with math-verify")
    return parsed


@VERIFIERS.register("math")
def math_answer(completion: str, record: dict[str, Any], answer_key: str = "answer") -> dict[str, Any]:
    """Whether the completion's final answer equals ``record[answer_key]`` (math-verify, no timeout).

    Parse failures of the completion count as wrong; a gold answer that does not parse raises.
    """
    correct, parsed = _verdict(completion, str(record[answer_key]))
    return {"correct": correct, "parsed": parsed}


# A group's samples often say the same thing (16 samples of "12+34=" hold a few distinct texts), and
# math-verify's parse is most of a step's verification time: each distinct text is parsed once.
@functools.lru_cache(maxsize=65536)
def _verdict(completion: str, gold_text: str) -> tuple[bool, str]:
    gold = _parse_gold(gold_text)
    pred = parse(completion, parsing_timeout=None)
    correct = bool(pred) and verify(gold, pred, timeout_seconds=None)
    # parse() returns [sympy object, extracted string]; the string is what the model wrote.
    return bool(correct), str(pred[-1]) if pred else ""
