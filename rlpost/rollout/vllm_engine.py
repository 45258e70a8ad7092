"""vLLM rollout engine: the same contract as the HF engine (rlpost/rollout/hf_engine.py).

- `generate`: n samples per request, stop strings and EOS, logprobs of the sampled tokens under
  the temperature-scaled policy (vLLM's `processed_logprobs`), greedy logprobs at T=1, per-request
  seeds drawn from the engine's own counter (reproducible, checkpointed).
- `load_weights(payload)`: in-place reload of HF-named weights (tied models send only
  `model.embed_tokens.weight`), tied output layer refreshed, prefix cache reset, version set.
- `logprobs(sequences, temperature)`: teacher-forced logprobs of given completions under the
  current weights, for the controller's parity check.

Every call that depends on the vLLM version goes through `rlpost.rollout.vllm_compat`.
Options not in rlpost's config yet are read from the environment (see `_env_options`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from rlpost.rollout import vllm_compat as compat
from rlpost.types import Completion, Request, SamplingParams, WeightPayload

log = logging.getLogger("rlpost.rollout.vllm")

_SEED_STRIDE = 1 << 32  # per-engine seed spaces do not overlap for counters below 2**32


def _env_options() -> dict:
    """Engine options from the environment (until rlpost's config has keys for them)."""
    def num(name, cast):
        value = os.environ.get(name)
        return cast(value) if value not in (None, "") else None

    return {
        "kv_cache_gb": num("RLPOST_VLLM_KV_CACHE_GB", float),
        "gpu_memory_utilization": num("RLPOST_VLLM_GPU_MEMORY_UTILIZATION", float),
        "max_model_len": num("RLPOST_VLLM_MAX_MODEL_LEN", int),
        "tensor_parallel_size": num("RLPOST_VLLM_TP", int),
    }


def checkpoint_tensor_names(folder: str) -> set[str] | None:
    """Tensor names stored in a HF folder's safetensors files (None when it has none)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="np") as fh:
            names.update(fh.keys())
    return names


class VLLMEngine:
    """RolloutEngine over a vLLM `LLM` living in this process (the rollout actor)."""

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "float32",
        seed: int = 0,
        batch_size: int = 256,
        threads: int | None = None,
        *,
        kv_cache_gb: float | None = None,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        tensor_parallel_size: int | None = None,
        lora_rank: int | None = None,
        sleep_mode: bool = False,
    ) -> None:
        from transformers import AutoConfig

        from rlpost.models.loading import load_tokenizer

        env = _env_options()
        self.model_path = str(model_path)
        self.tokenizer = load_tokenizer(self.model_path)
        self.pad_id = int(self.tokenizer.pad_token_id) if self.tokenizer.pad_token_id is not None else 0
        hf_config = AutoConfig.from_pretrained(self.model_path)
        eos = getattr(hf_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(int(self.tokenizer.eos_token_id))
        self.eos_ids = sorted(int(t) for t in eos_ids)  # the same stop set as the HF engine
        self.weight_names = checkpoint_tensor_names(self.model_path)  # what a full sync must carry
        self.llm = compat.create_llm(
            self.model_path, dtype=dtype, seed=seed, max_num_seqs=batch_size, threads=threads,
            kv_cache_gb=kv_cache_gb if kv_cache_gb is not None else env["kv_cache_gb"],
            gpu_memory_utilization=gpu_memory_utilization if gpu_memory_utilization is not None else env["gpu_memory_utilization"],
            max_model_len=max_model_len or env["max_model_len"],
            tensor_parallel_size=tensor_parallel_size or env["tensor_parallel_size"] or 1,
            extra={**(compat.lora_options(lora_rank) if lora_rank else {}), **({"enable_sleep_mode": True} if sleep_mode else {})},
        )
        # With LoRA serving on, adapter syncs become vLLM LoRA requests (one live version at a time).
        self.serves_adapters = bool(lora_rank)
        self.lora_request = None
        self.seed = int(seed)
        self.counter = 0  # advances by n per request: every sample gets its own seed
        self.version = 0
        # The first sampled-logprob request compiles a small torch op (~2 s): pay it here, not in step 0.
        self._generate([compat.tokens_prompt([self.pad_id])], compat.sampling_params(max_tokens=1, seed=0, detokenize=False))

    # ------------------------------------------------------------------ contract

    def generate(self, requests: Sequence[Request], sampling: SamplingParams) -> list[Completion]:
        """n samples per request, in request order (all samples of request 0 first)."""
        if any(r.reads is not None for r in requests):
            raise ValueError("the vLLM engine only generates: choices in the prompt (Request.reads) need rollout.engine: hf")
        sp = sampling
        greedy = sp.temperature < 1e-5  # vLLM's own greedy threshold (it refuses n > 1 below it)
        prompts, params, owners = [], [], []
        for req in requests:
            n = req.n if req.n is not None else sp.n
            if n <= 0:
                continue
            prompts.append(compat.tokens_prompt(req.prompt_ids))
            params.append(compat.sampling_params(
                n=1 if greedy else n, max_tokens=sp.max_new_tokens, temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k,
                stop=sp.stop, stop_token_ids=self.eos_ids, seed=self.seed * _SEED_STRIDE + self.counter,
                logprobs=0, detokenize=bool(sp.stop),  # vLLM needs text only to find stop strings
            ))
            owners.append((req, n))
            self.counter += n
        if not prompts:
            return []
        outputs = self._generate(prompts, params)
        out: list[Completion] = []
        for (req, n), res in zip(owners, outputs):
            samples = sorted(res.outputs, key=lambda o: o.index)
            if greedy:  # vLLM refuses n > 1 with greedy decoding: the samples are copies anyway
                samples = samples * n
            for o in samples:
                toks = [int(t) for t in o.token_ids]
                out.append(Completion(
                    key=req.key, prompt_ids=list(req.prompt_ids), token_ids=toks, text=self._text(toks, sp.stop),
                    logprobs=compat.sampled_logprobs(o), finish_reason="length" if o.finish_reason == "length" else "stop",
                    policy_version=self.version,
                ))
        if not greedy and (sp.top_k > 0 or sp.top_p < 1.0):
            # vLLM's processed logprobs are of the top-k/top-p renormalised distribution; the learner
            # (and the HF engine) use the full tempered one. Re-score the samples, teacher-forced
            # (one prefill per sample at T=1, one 1-token request per sampled token otherwise).
            fixed = self.logprobs([(c.prompt_ids, c.token_ids) for c in out], sp.temperature)
            for c, lp in zip(out, fixed):
                c.logprobs = lp
        return out

    def load_adapter(self, version: int, folder: str) -> None:
        """Serve the LoRA adapter in `folder` (peft format) for every request from now on."""
        old = self.lora_request
        self.lora_request = compat.lora_request(f"policy-v{version}", version + 1, folder)
        if old is not None:
            compat.remove_lora(self.llm, old.lora_int_id)
        compat.reset_prefix_cache(self.llm)
        self.version = version

    def sleep(self) -> None:
        """Offload the weights to CPU memory and drop the KV cache (colocated placement on a GPU: the
        learner trains meanwhile); ``wake`` brings them back. vLLM's level-1 sleep, GPU only."""
        self.llm.sleep(level=1)

    def wake(self) -> None:
        self.llm.wake_up()
        compat.reset_prefix_cache(self.llm)

    def _generate(self, prompts, params):
        return self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)

    def load_weights(self, payload: WeightPayload) -> None:
        """In-place reload (HF names), tied output layer refreshed, prefix cache dropped, version set."""
        self._check_names([name for name, _, _ in payload.specs])
        compat.load_weights(self.llm, payload.tensors())
        compat.reset_prefix_cache(self.llm)
        self.version = payload.version

    def logprobs(
        self, sequences: Sequence[tuple[Sequence[int], Sequence[int]]], temperature: float = 1.0
    ) -> list[list[float]]:
        """Logprobs of given completion tokens under the engine's current weights (parity checks).

        T=1: one prefill per sequence with vLLM's prompt logprobs. Other temperatures: vLLM's
        prompt logprobs ignore temperature, so each completion position is scored by a 1-token
        request with `logprob_token_ids` (prefixes come from the prefix cache).
        """
        temp = temperature if temperature and temperature > 0 else 1.0
        out: list[list[float]] = [[] for _ in sequences]
        todo = [i for i, (_, c) in enumerate(sequences) if len(c) > 0]
        if not todo:
            return out
        for i in todo:
            if len(sequences[i][0]) == 0:
                raise ValueError("logprobs needs a non-empty prompt for every sequence")
        if abs(temp - 1.0) < 1e-8:
            prompts = [compat.tokens_prompt(list(sequences[i][0]) + list(sequences[i][1])) for i in todo]
            sp = compat.sampling_params(max_tokens=1, temperature=1.0, logprobs=None, prompt_logprobs=0, detokenize=False, seed=0)
            for i, res in zip(todo, self._generate(prompts, sp)):
                out[i] = compat.prompt_token_logprobs(res, len(sequences[i][0]))
            return out
        prompts, params, where = [], [], []
        for i in todo:
            p, c = list(sequences[i][0]), list(sequences[i][1])
            for t in range(len(c)):
                prompts.append(compat.tokens_prompt(p + c[:t]))
                params.append(compat.sampling_params(
                    max_tokens=1, temperature=temp, logprobs=None, logprob_token_ids=[c[t]], detokenize=False, seed=0,
                ))
                where.append((i, c[t]))
        for (i, tok), res in zip(where, self._generate(prompts, params)):
            out[i].append(compat.token_logprob(res.outputs[0], tok))
        return out

    def state_dict(self) -> dict:
        return {"engine": self.name, "seed": self.seed, "counter": self.counter, "version": self.version}

    def load_state_dict(self, state: dict) -> None:
        if "counter" not in state:  # saved by another engine (rollout.engine changed between runs)
            log.warning("rollout state without a vLLM sample counter: sampling seeds restart at 0")
        self.seed = int(state.get("seed", self.seed))
        self.counter = int(state.get("counter", 0))
        self.version = int(state["version"])

    # ------------------------------------------------------------------ helpers

    def _check_names(self, names: list[str]) -> None:
        """Refuse a payload before vLLM sees it: a reload that fails half-way leaves layers on the meta
        device, and layers a payload omits silently keep their old weights."""
        if self.weight_names is None:
            return
        unknown = sorted(set(names) - self.weight_names)
        if unknown:
            raise KeyError(f"weight '{unknown[0]}' from the learner does not exist in the rollout model ({len(unknown)} unknown)")
        # (buffers some checkpoints store, e.g. rotary inv_freq, are not trained and never sent)
        missing = sorted(n for n in self.weight_names - set(names) if n.endswith((".weight", ".bias")))
        if missing:
            raise KeyError(f"the payload lacks '{missing[0]}' ({len(missing)} tensors): a sync must carry every weight")

    def _text(self, toks: list[int], stop: list[str]) -> str:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        for s in stop:  # like the HF engine: the text stops before the stop string
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        return text
