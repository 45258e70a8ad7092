"""What travels from the learner to the rollout workers, per update mode.

- ``WeightPayload`` (rlpost.types): dense tensors in one flat float32 buffer (full mode, merged LoRA).
- ``AdapterSync``: LoRA A/B only; the receiver merges them out of place into its staged base.
- ``SparseSync``: the values at a fixed mask's indices; indices travel once, with the first sync.

Every non-full mode opens with an *anchor*: a dense payload of every weight that the receiver stages,
so later syncs can be small and the engine still gets complete tensors.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from rlpost.types import WeightPayload


def pack(version: int, named: Iterable[tuple[str, torch.Tensor]], partial: bool = False,
         out: np.ndarray | None = None) -> WeightPayload:
    """Tensors -> one flat float32 buffer plus (name, shape, offset) specs; `out` is reused if it fits."""
    items = [(n, t.detach()) for n, t in named]
    total = sum(t.numel() for _, t in items)
    buffer = out if out is not None and out.size == total else np.empty(total, dtype=np.float32)
    flat = torch.from_numpy(buffer)
    specs, offset = [], 0
    for name, t in items:
        flat[offset : offset + t.numel()].copy_(t.reshape(-1))
        specs.append((name, tuple(t.shape), offset))
        offset += t.numel()
    return WeightPayload(version=version, buffer=buffer, specs=specs, partial=partial)


@dataclass
class AdapterSync:
    """LoRA factors for ``targets`` (base weight names): ``W = W0 + scaling * B @ A``."""

    version: int
    targets: list[str]
    factors: WeightPayload  # '<target>:A' [r, in] and '<target>:B' [out, r] for every target
    scaling: float
    anchor: WeightPayload | None = None  # first sync: every base weight, staged by the receiver
    peft_config: dict | None = None  # for engines that serve adapters themselves (vLLM LoRA requests)

    @property
    def nbytes(self) -> int:
        return self.factors.nbytes + (self.anchor.nbytes if self.anchor is not None else 0)


@dataclass
class SparseSync:
    """Values of the masked entries of ``names``, in ascending flat-index order, concatenated."""

    version: int
    mask_id: str
    names: list[str]
    values: np.ndarray  # float32, sum of mask sizes
    dense: WeightPayload | None = None  # tensors trained densely (norms, biases), sent whole
    indices: dict[str, np.ndarray] | None = None  # int32/int64 per name; only with the first sync
    anchor: WeightPayload | None = None

    @property
    def nbytes(self) -> int:
        n = int(self.values.nbytes)
        n += self.dense.nbytes if self.dense is not None else 0
        n += sum(int(i.nbytes) for i in self.indices.values()) if self.indices else 0
        return n + (self.anchor.nbytes if self.anchor is not None else 0)


def write_peft_adapter(p: AdapterSync, folder: str) -> str:
    """Write ``p`` as a peft adapter folder (adapter_config.json + adapter_model.safetensors)."""
    import json
    import os

    from safetensors.torch import save_file

    if p.peft_config is None:
        raise ValueError("this adapter sync carries no peft config: the engine cannot serve it as an adapter")
    tensors = {}
    for name, t in p.factors.tensors():
        target, which = name.rsplit(":", 1)
        module = target[: -len(".weight")] if target.endswith(".weight") else target
        tensors[f"base_model.model.{module}.lora_{which}.weight"] = t.clone()
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"))
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(p.peft_config, f)
    return folder


def payload_bytes(payload: WeightPayload | AdapterSync | SparseSync) -> int:
    return int(payload.nbytes)
