"""Importing this module registers the built-in verifiers (``VERIFIERS`` loads it on first lookup)."""
from verifiers import expression, math_answer, numeric, pattern  # noqa: F401
