"""The rollout-side receiver: anchors, out-of-place LoRA merge, sparse values, partial reloads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpost.sync import AdapterSync, SparseSync, SyncError, WeightReceiver, pack


def as_dict(payload):
    return {n: t.clone() for n, t in payload.tensors()}


def test_lora_merge_is_out_of_place_on_the_spec_example():
    w = torch.eye(2)
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5], [0.25]])  # r=1, alpha=2 -> s=2
    rx = WeightReceiver(partial_ok=True)
    first = AdapterSync(0, ["w"], pack(0, [("w:A", a), ("w:B", b)]), 2.0, anchor=pack(0, [("w", w), ("n", torch.ones(2))]))
    out = as_dict(rx.apply(first))
    assert torch.equal(out["w"], torch.tensor([[2.0, 2.0], [0.5, 2.0]]))
    assert torch.equal(rx.staged["w"], torch.eye(2))  # the base never changes: merges cannot drift
    # later syncs carry A/B only; an engine that takes partial reloads gets just the targets
    later = rx.apply(AdapterSync(1, ["w"], pack(1, [("w:A", a * 0), ("w:B", b)]), 2.0))
    assert later.partial and as_dict(later).keys() == {"w"} and torch.equal(as_dict(later)["w"], torch.eye(2))


def test_adapter_or_values_before_an_anchor_are_refused():
    rx = WeightReceiver(partial_ok=True)
    with pytest.raises(SyncError, match="before any anchor"):
        rx.apply(AdapterSync(1, ["w"], pack(1, [("w:A", torch.ones(1, 2)), ("w:B", torch.ones(2, 1))]), 1.0))
    with pytest.raises(SyncError, match="before any anchor"):
        rx.apply(SparseSync(1, "m", ["w"], np.zeros(1, dtype=np.float32)))


def test_sparse_values_rebuild_the_tensor_and_indices_travel_once():
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    idx = np.array([1, 5, 6, 11], dtype=np.int32)
    rx = WeightReceiver(partial_ok=False)  # like vLLM: every reload carries every tensor
    anchor = pack(0, [("w", w), ("b", torch.zeros(4))])
    v0 = w.reshape(-1)[torch.from_numpy(idx).long()].numpy()
    rx.apply(SparseSync(0, "m1", ["w"], v0, indices={"w": idx}, anchor=anchor))
    new_vals = np.array([-1, -5, -6, -11], dtype=np.float32)
    out = rx.apply(SparseSync(1, "m1", ["w"], new_vals, dense=pack(1, [("b", torch.full((4,), 7.0))])))
    got = as_dict(out)
    expect = w.clone().reshape(-1)
    expect[torch.from_numpy(idx).long()] = torch.from_numpy(new_vals)
    assert not out.partial and set(got) == {"w", "b"}
    assert torch.equal(got["w"], expect.reshape(3, 4)) and torch.equal(got["b"], torch.full((4,), 7.0))
    with pytest.raises(SyncError, match="before its indices"):
        rx.apply(SparseSync(2, "other-mask", ["w"], new_vals))
    with pytest.raises(SyncError, match="carries 3 values"):
        rx.apply(SparseSync(2, "m1", ["w"], new_vals[:3]))


def test_values_payload_size_for_density_0_2():
    n = 1000 * 1000
    values = np.zeros(int(0.2 * n), dtype=np.float32)
    assert SparseSync(1, "m", ["w"], values).nbytes == 800_000  # fp32 on the wire here (400,000 in bf16)


def test_partial_dense_sync_is_completed_for_engines_that_need_every_tensor():
    rx = WeightReceiver(partial_ok=False)
    with pytest.raises(SyncError, match="partial sync arrived before any full one"):
        rx.apply(pack(1, [("a", torch.ones(2))], partial=True))
    rx.apply(pack(1, [("a", torch.ones(2)), ("b", torch.zeros(2))]))
    out = as_dict(rx.apply(pack(2, [("a", torch.full((2,), 3.0))], partial=True)))
    assert set(out) == {"a", "b"} and out["a"].tolist() == [3.0, 3.0]
