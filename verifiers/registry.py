"""The verifier registry and up-front resolution of ``(name, fn_spec, kwargs)`` specs."""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from rlpost.registry import Registry

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
    seen: set[str] = set()
    fns = []
    for name, fn_spec, kwargs in specs:
        if name in seen:
            raise ValueError(f"verifier names must be unique, '{name}' appears twice")
        seen.add(name)
        try:
            fn = VERIFIERS.get(fn_spec)
        except Exception as e:  # a plug-in file can fail to import with anything
            raise ValueError(f"verifier '{name}': cannot resolve '{fn_spec}': {type(e).__name__}: {e}") from e
        if not callable(fn):
            raise ValueError(f"verifier '{name}': '{fn_spec}' resolves to a non-callable {type(fn).__name__}")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some C callables have no signature; nothing to check
            signature = None
        if signature is not None:
            try:
                signature.bind("", {}, **kwargs)
            except TypeError as e:
                raise ValueError(
                    f"verifier '{name}' ('{fn_spec}') does not fit fn(completion, record, **kwargs) "
                    f"with kwargs {kwargs}: {e}"
                ) from e
        fns.append(fn)
    return fns
