"""The verifier registry and up-front resolution of ``(name, fn_spec, kwargs)`` specs."""
from __future__ import annotations

import os
from typing import Any, Callable

from rlpost.registry import Registry, resolve_specs

VerifierFn = Callable[..., dict[str, Any]]
VerifierSpec = tuple[str, str, dict[str, Any]]  # (name, registered name or 'module:fn' / 'file.py:fn', kwargs)

VERIFIERS: Registry[VerifierFn] = Registry("verifier", builtins_module="verifiers.builtin")


def absolute_spec(fn_spec: str) -> str:
    """Make a ``file.py:fn`` spec absolute so it resolves the same from any working directory."""
    target, sep, attr = fn_spec.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{os.path.abspath(target)}:{attr}"
    return fn_spec


def resolve_verifiers(specs: list[VerifierSpec]) -> list[VerifierFn]:
    """Resolve every spec to its function, checking names are unique and kwargs fit the signature."""
    return resolve_specs(VERIFIERS, specs, ("", {}), "fn(completion, record, **kwargs)")
