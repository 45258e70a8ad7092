"""Learner -> rollout weight sync: payload kinds per update mode and the receiver that applies them."""
from rlpost.sync.payloads import AdapterSync, SparseSync, pack, payload_bytes
from rlpost.sync.receiver import SyncError, WeightReceiver

__all__ = ["AdapterSync", "SparseSync", "SyncError", "WeightReceiver", "pack", "payload_bytes"]
