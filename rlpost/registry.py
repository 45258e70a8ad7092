"""Name -> object registries that also resolve user plug-ins by path.

A component is named either by its registered name (``"math"``), by an import path
(``"my_pkg.my_module:my_fn"``) or by a file path (``"path/to/file.py:my_fn"``), so users
plug in their own verifiers, rewards or algorithms without forking rlpost.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class RegistryError(LookupError):
    """A name that no registry entry or import path resolves."""


def load_object(spec: str) -> Any:
    """Import ``module.path:attr`` or ``file.py:attr`` and return the attribute."""
    if ":" not in spec:
        raise RegistryError(f"'{spec}' is not of the form 'package.module:function' or 'file.py:function'")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise RegistryError(f"plug-in file not found: {target}")
        mod_name = "rlpost_plugin_" + os.path.splitext(os.path.basename(path))[0]
        module = sys.modules.get(mod_name)
        if module is None or getattr(module, "__file__", None) != path:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as e:  # a plug-in file can fail to import with anything
                sys.modules.pop(mod_name, None)  # a half-run module must not answer the next lookup
                raise RegistryError(f"plug-in file {target} failed to import: {_one_line(e)}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise RegistryError(f"cannot import '{target}' for '{spec}': {e}") from e
        except Exception as e:
            raise RegistryError(f"module '{target}' failed to import: {_one_line(e)}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"'{target}' has no attribute '{attr}' (from '{spec}')") from None


def _one_line(e: Exception) -> str:
    """``Type: message`` on one line (a SyntaxError names its file and line)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


class Registry(Generic[T]):
    """A named collection of components of one kind (verifiers, rewards, advantages...)."""

    def __init__(self, kind: str, builtins_module: str | tuple[str, ...] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        # Imported lazily on first lookup so that registering modules stay cheap to import.
        self._builtins = (builtins_module,) if isinstance(builtins_module, str) else tuple(builtins_module or ())

    def _load_builtins(self) -> None:
        mods, self._builtins = self._builtins, ()
        for mod in mods:
            importlib.import_module(mod)

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        self._load_builtins()
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return load_object(name)
        known = ", ".join(sorted(self._items)) or "none"
        raise RegistryError(f"unknown {self.kind} '{name}' (known: {known}; or give 'package.module:function')")

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._items


def resolve_specs(
    registry: Registry, specs: list[tuple[str, str, dict]], probe_args: tuple, contract: str, partial: bool = False
) -> list[Callable]:
    """Resolve `(name, fn_spec, kwargs)` specs, checking names are unique and that each function
    accepts `probe_args` plus its kwargs (`contract` describes the expected signature); a function with a
    ``check_kwargs(**kwargs)`` attribute has it called too (it raises ValueError saying what is wrong)."""
    import inspect

    seen: set[str] = set()
    fns = []
    for name, fn_spec, kwargs in specs:
        if name in seen:
            raise ValueError(f"{registry.kind} names must be unique, '{name}' appears twice")
        seen.add(name)
        try:
            fn = registry.get(fn_spec)
        except Exception as e:  # a plug-in file can fail to import with anything
            raise ValueError(f"{registry.kind} '{name}': cannot resolve '{fn_spec}': {type(e).__name__}: {e}") from e
        if not callable(fn):
            raise ValueError(f"{registry.kind} '{name}': '{fn_spec}' resolves to a non-callable {type(fn).__name__}")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some C callables have no signature; nothing to check
            signature = None
        if signature is not None:
            try:
                (signature.bind_partial if partial else signature.bind)(*probe_args, **(kwargs or {}))
            except TypeError as e:
                raise ValueError(
                    f"{registry.kind} '{name}' ('{fn_spec}') does not fit {contract} with kwargs {kwargs}: {e}"
                ) from e
        if callable(getattr(fn, "check_kwargs", None)):  # the component's own start-up check of its kwargs
            try:
                fn.check_kwargs(**(kwargs or {}))
            except Exception as e:  # a plug-in's check may raise anything: one line, never a traceback
                detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
                raise ValueError(f"{registry.kind} '{name}': {detail}") from None
        fns.append(fn)
    return fns
