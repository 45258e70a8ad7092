"""Data parallelism for a group of Learner ranks (cluster.learner_ranks): torch.distributed inside Ray actors.

Every rank gets the step's whole batch (one object in Ray's store) and trains on its share of each
minibatch; the aggregation's denominators are the minibatch's, as on one rank, so the summed gradients
are the one-rank gradients. After the backward the ranks all-reduce their gradients (gloo on CPU, NCCL
on GPUs), then each takes the same optimizer step: their weights stay identical, and any rank can export.
"""
from __future__ import annotations

import hashlib
import socket
from datetime import timedelta

import torch
import torch.distributed as dist

from rlpost.types import TrainSample

JOIN_TIMEOUT = timedelta(minutes=10)


def endpoint() -> str:
    """host:port where rank 0 listens for the others: this node's address and a free port."""
    try:
        import ray

        host = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    except ImportError:
        host = "127.0.0.1"
    with socket.socket() as s:
        s.bind(("", 0))
        return f"{host}:{s.getsockname()[1]}"


class RankGroup:
    """This process's place in the learner group, and the collectives the update needs."""

    def __init__(self, rank: int, world: int, address: str, device: torch.device) -> None:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world, timeout=JOIN_TIMEOUT)
        self.rank, self.world, self.device = rank, world, device

    def broadcast_from_first(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values everywhere (the ranks start from the same weights even if their loads differed)."""
        for t in tensors:
            dist.broadcast(t.data, src=0)

    def share(self, idx: list[int], samples: list[TrainSample]) -> list[int]:
        """This rank's rows of a minibatch: longest first, dealt round-robin, so every rank gets similar lengths."""
        order = sorted(idx, key=lambda i: -(len(samples[i].prompt_ids) + len(samples[i].token_ids)))
        return order[self.rank :: self.world]

    def reduce_gradients(self, params: list[torch.nn.Parameter], finite: bool) -> bool:
        """Sum every rank's gradients in place; False on every rank if any rank's loss was non-finite.
        A parameter that got no gradient on any rank keeps none (the optimizer skips it, as on one rank)."""
        flags = torch.tensor([float(finite)] + [float(p.grad is not None) for p in params], device=self.device)
        dist.all_reduce(flags[:1], op=dist.ReduceOp.MIN)
        dist.all_reduce(flags[1:], op=dist.ReduceOp.MAX)
        if not flags[0]:
            return False
        live = [p for p, has in zip(params, flags[1:].tolist()) if has]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if live:
            flat = torch.cat([p.grad.reshape(-1) for p in live])
            dist.all_reduce(flat)
            offset = 0
            for p in live:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        return True


def digest(tensors: list[torch.Tensor]) -> str:
    """A hash of the tensors' bytes: equal on two ranks only if their weights are bitwise identical."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
