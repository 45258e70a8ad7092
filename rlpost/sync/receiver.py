"""Rollout side of the sync: turns any payload kind into complete tensors for the engine.

The receiver keeps a staging copy of the weights (from the anchor) so that adapter and sparse
syncs, which carry only what changed, still hand the engine whole tensors: engines that accept a
partial reload (HF) get only the touched tensors, the others (vLLM's layerwise reload) get all.
"""
from __future__ import annotations

import numpy as np
import torch

from rlpost.sync.payloads import AdapterSync, SparseSync, pack
from rlpost.types import WeightPayload


class SyncError(RuntimeError):
    """A payload the receiver cannot apply (no anchor yet, unknown mask, shape mismatch)."""


class WeightReceiver:
    def __init__(self, partial_ok: bool) -> None:
        self.partial_ok = partial_ok
        self.staged: dict[str, torch.Tensor] = {}
        self.masks: dict[str, dict[str, torch.Tensor]] = {}  # mask_id -> name -> flat indices

    def apply(self, payload) -> WeightPayload:
        """The dense payload to load into the engine for ``payload``."""
        if isinstance(payload, WeightPayload):
            return self._dense(payload)
        if payload.anchor is not None:
            self.staged = {}
            self._stage(payload.anchor)
        if not self.staged:
            raise SyncError(
                f"a {type(payload).__name__} arrived before any anchor sync: the rollout worker has no "
                "base weights to apply it to (was it restarted without the learner resending an anchor?)"
            )
        if isinstance(payload, AdapterSync):
            touched = self._merge_adapter(payload)
        elif isinstance(payload, SparseSync):
            touched = self._scatter_values(payload)
        else:
            raise SyncError(f"unknown payload type {type(payload).__name__}")
        if self.partial_ok and payload.anchor is None:
            return pack(payload.version, touched.items(), partial=True)
        return pack(payload.version, ((n, touched.get(n, t)) for n, t in self.staged.items()))

    def _dense(self, p: WeightPayload) -> WeightPayload:
        # Engines that need every tensor on each reload get a partial payload completed from staging.
        if self.partial_ok:
            if self.staged:
                self._stage(p)
            return p
        if p.partial and not self.staged:
            raise SyncError("a partial sync arrived before any full one: nothing to complete it from")
        self._stage(p)
        return pack(p.version, self.staged.items()) if p.partial else p

    def _stage(self, dense: WeightPayload) -> None:
        for name, t in dense.tensors():
            self.staged[name] = t.clone()

    def _base(self, name: str) -> torch.Tensor:
        if name not in self.staged:
            raise SyncError(f"sync names '{name}', which the anchor did not carry")
        return self.staged[name]

    def _merge_adapter(self, p: AdapterSync) -> dict[str, torch.Tensor]:
        f = dict(p.factors.tensors())
        out = {}
        for name in p.targets:
            a, b = f[f"{name}:A"], f[f"{name}:B"]
            # Out of place in fp32: the staged base is never modified, so merges cannot drift.
            out[name] = torch.addmm(self._base(name).float(), b.float(), a.float(), alpha=p.scaling)
        return out

    def _scatter_values(self, p: SparseSync) -> dict[str, torch.Tensor]:
        if p.indices is not None:
            self.masks[p.mask_id] = {n: torch.from_numpy(np.asarray(i)).long() for n, i in p.indices.items()}  # index_copy_ takes int64
        idx = self.masks.get(p.mask_id)
        if idx is None:
            raise SyncError(f"values for mask '{p.mask_id}' arrived before its indices")
        out: dict[str, torch.Tensor] = {}
        values = torch.from_numpy(np.asarray(p.values))
        expected = sum(idx[n].numel() for n in p.names)
        if expected != values.numel():  # checked first: a half-applied sync would corrupt the staging
            raise SyncError(f"sparse sync carries {values.numel()} values, the mask selects {expected}")
        offset = 0
        for name in p.names:
            base = self._base(name)
            k = idx[name].numel()
            base.view(-1).index_copy_(0, idx[name], values[offset : offset + k])
            out[name] = base
            offset += k
        if p.dense is not None:
            for name, t in p.dense.tensors():
                self._base(name).copy_(t)
                out[name] = self.staged[name]
        return out
