"""Callbacks between RL steps: evaluation, checkpoints, NExt and linear extrapolation, user plug-ins."""
from rlpost.callbacks.base import CALLBACKS, Callback, CallbackContext, Callbacks, build_callbacks, every

__all__ = ["CALLBACKS", "Callback", "CallbackContext", "Callbacks", "build_callbacks", "every"]
