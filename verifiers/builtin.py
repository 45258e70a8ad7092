"""Importing this module registers the built-in verifiers (``VERIFIERS`` loads it on first lookup)."""
from verifiers import code, expression, math_answer, numeric, pattern  # noqa: F401
from verifiers.registry import VERIFIERS

# code.py also runs stand-alone as the sandbox launcher (standard library only), so it is registered here.
VERIFIERS.register("code")(code.verify_code)
