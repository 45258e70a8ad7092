"""Verifiers: ``verify(completion, record, **kwargs) -> facts`` and a process pool that runs them.

A verifier judges one completion against its dataset row and returns JSON-serialisable facts;
one that judges correctness puts ``"correct": bool`` (and ``"parsed"``, what it extracted) in them.
Rewards turn facts into numbers (see ``rewards``).
"""
from verifiers.registry import VERIFIERS, VerifierSpec, resolve_verifiers
from verifiers.runner import VerifierRunner

__all__ = ["VERIFIERS", "VerifierRunner", "VerifierSpec", "resolve_verifiers"]
