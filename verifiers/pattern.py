"""The ``regex`` verifier: whether the completion matches a regular expression."""
from __future__ import annotations

import re
from typing import Any

from verifiers.registry import VERIFIERS


def regex_flags(flags: int | str) -> int:
    """``re`` flags from an int or from names such as ``"IGNORECASE|MULTILINE"`` or ``"I,S"`` (YAML-friendly)."""
    if isinstance(flags, int):
        return flags
    value = 0
    for name in re.split(r"[|,\s]+", flags.strip()):
        if name:
            try:
                value |= re.RegexFlag[name.upper()]
            except KeyError:
                raise ValueError(f"unknown regex flag {name!r}") from None
    return value


@VERIFIERS.register("regex")
def regex(
    completion: str, record: dict[str, Any], pattern: str, flags: int | str = 0, fullmatch: bool = False
) -> dict[str, Any]:
    """Whether ``pattern`` is found in (or, with ``fullmatch``, matches all of) the completion."""
    compiled = re.compile(pattern, regex_flags(flags))
    match = compiled.fullmatch(completion) if fullmatch else compiled.search(completion)
    matched = match is not None
    return {"correct": matched, "matched": matched, "parsed": match.group(0) if match else ""}
