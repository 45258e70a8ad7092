"""Typed configuration: every key has a default; a recipe YAML and `key.sub=value` overrides
change them. Errors name the key, file or column and what was expected, in one line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlpost.textfile import read_utf8

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = REPO_ROOT / "recipes"


class ConfigError(ValueError):
    """A user error in a recipe or override; the message is one line for the console."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = "run"
    output_dir: str = Field("runs/{name}", description="may use {name}, the run's name")
    seed: int = Field(0, ge=0)
    threads: int = Field(1, ge=1, description="torch threads per process")

    @field_validator("output_dir")
    @classmethod
    def _only_name_field(cls, v: str) -> str:
        try:
            v.format(name="run")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"only {{name}} can be filled in ({type(e).__name__}: {e})") from None
        return v


class TinyModelConfig(Section):
    arch: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=1)
    max_position_embeddings: int = Field(512, ge=1)
    tie_word_embeddings: bool = True
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _heads_divide(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}, "
                f"and num_heads a multiple of num_kv_heads={self.num_kv_heads}"
            )
        return self


class ModelConfig(Section):
    source: Literal["tiny", "hf", "gguf"] = "tiny"
    path: str | None = Field(None, description="HF folder, or 'package:<name>' for a model shipped in a pip package")
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="compute precision: the learner keeps fp32 master weights and runs forward/backward "
        "under autocast in this dtype; engines, SFT evaluation and rerankers hold their weights in it"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA in each process given a GPU (cluster.learner_gpus / rollout_gpus) when CUDA "
        "is visible there, else CPU"
    )
    tiny: TinyModelConfig = TinyModelConfig()


class DataConfig(Section):
    task: str = "arithmetic"
    task_kwargs: dict[str, Any] = {}
    train_split: str = "train"
    eval_split: str = "test"
    template: str | None = None
    use_chat_template: bool | None = None
    system_prompt: str | None = None
    cohort: str | None = Field(
        None, description="a record column (e.g. qid): records sharing its value are a cohort, always in the same step, "
        "so rewards that compare a cohort (locality 'cohort', e.g. ERank's) see all of it; train.prompts_per_step counts records",
    )


class SFTConfig(Section):
    steps: int = Field(500, ge=0)
    update: Literal["full", "lora"] = Field("full", description="what SFT trains: every weight, or a LoRA adapter (learner.lora's settings) merged into the saved model")
    batch_size: int = Field(128, ge=1, description="examples per optimizer step")
    micro_batch_size: int | None = Field(None, ge=1, description="examples per forward/backward (gradients accumulate over a step); None: the whole batch")
    max_length: int | None = Field(None, ge=2, description="examples whose prompt + target exceed this many tokens are left out (counted on the console)")
    lr: float = Field(3e-3, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm")
    target_template: str = "{answer}"
    rank_weight: float = Field(0.0, ge=0, description="weight of the ranking term (rlpost/algos/rank_loss.py) beside cross-entropy; needs records with rank_gains and rank_group (the reranking tasks)")
    rank_sigma: float = Field(1.0, gt=0, description="the ranking term's logistic scale, in score points")
    point_weight: float = Field(0.0, ge=0, description="weight of a pointwise term at the same score slots: the cross-entropy of each slot's gold digit (the digit nearest its gain) under the digit distribution the ranking term reads, the mean over the batch's slots; needs rank_weight > 0. Our proposal, for slots no target writes (GroupRank's score_at: block)")
    rank_pattern: str | None = Field(None, description="regex whose matches in the rendered target are its scores, in rank_gains' order (None: numbers not in brackets, rlpost.ranking.slots.SCORE_PATTERN); a leading '1' reads as 10")
    task_kwargs: dict[str, Any] = Field({}, description="merged over data.task_kwargs for the SFT records only (e.g. other rows than RL's)")
    output_dir: str | None = Field(None, description="defaults to <run dir>/sft")
    log_every: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _point_reads_rank_slots(self) -> "SFTConfig":
        if self.point_weight > 0 and self.rank_weight <= 0:
            raise ValueError(f"point_weight={self.point_weight} reads the ranking term's score slots: it needs rank_weight > 0")
        return self


class EvalConfig(Section):
    split: str | None = Field(None, description="defaults to data.eval_split")
    limit: int | None = Field(500, ge=0)
    max_new_tokens: int = Field(16, ge=1)
    batch_size: int = Field(256, ge=1)
    pass_k: list[int] = Field([1], description="pass@k reported besides every power of two up to eval.samples")
    samples: int = Field(0, ge=0, description="samples per prompt for pass@k curves (0: greedy only)")
    temperature: float = Field(1.0, ge=0)
    output: str | None = Field(None, description="JSON path; defaults to <run dir>/eval.json")
    breakdown: str | None = Field("level", description="record column to also report accuracy by, when the records have it")

    @model_validator(mode="after")
    def _ks_fit(self) -> "EvalConfig":
        bad = [k for k in self.pass_k if k < 1 or (self.samples and k > self.samples)]
        if bad:
            raise ValueError(f"pass_k {bad} must be between 1 and eval.samples={self.samples}")
        return self


class RolloutConfig(Section):
    engine: str = Field("hf", description="hf | vllm | auto, or a plug-in engine factory 'module:fn' / 'file.py:fn'")
    n: int = Field(8, ge=1, description="samples per prompt")
    max_new_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    stop: list[str] = []
    batch_size: int = Field(256, ge=1, description="sequences per forward pass")
    vllm_kv_cache_gb: float | None = Field(None, gt=0, description="vLLM CPU KV cache (GiB)")
    vllm_gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    vllm_max_model_len: int | None = Field(None, ge=1)
    vllm_tensor_parallel_size: int | None = Field(None, ge=1)


class SamplerConfig(Section):
    name: str = "uniform"
    kwargs: dict[str, Any] = {}


class VerifierSpec(Section):
    name: str
    fn: str | None = Field(None, description="registered name or 'module:function' / 'file.py:function'")
    kwargs: dict[str, Any] = {}

    @property
    def target(self) -> str:
        return self.fn or self.name


class VerifyConfig(Section):
    verifiers: list[VerifierSpec] = [VerifierSpec(name="math")]
    timeout_s: float = Field(5.0, gt=0)
    num_workers: int = Field(1, ge=0)


class RewardSpec(Section):
    name: str
    fn: str | None = None
    weight: float = 1.0
    kwargs: dict[str, Any] = {}

    @property
    def target(self) -> str:
        return self.fn or self.name


class StageSpec(Section):
    """A pipeline stage: a registered name, or ``fn`` = 'module:function' / 'file.py:function'."""

    name: str
    fn: str | None = None
    kwargs: dict[str, Any] = {}

    @property
    def target(self) -> str:
        return self.fn or self.name


class CallbackSpec(StageSpec):
    """A callback between RL steps (rlpost/callbacks): a registered name, or ``fn`` = 'module:name' / 'file.py:name'."""


def _as_spec(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


class AlgoConfig(Section):
    # The pipeline (rlpost/pipeline.py), in the order it runs; a bare name stands for {name: ...}.
    shape: list[StageSpec] = Field([], description="reward shaping on the objective vector, e.g. unlikeliness")
    combiner: StageSpec = Field(StageSpec(name="fixed"), description="objective vector -> scalar reward")
    advantage: StageSpec = Field(StageSpec(name="grpo"), description="grpo | dr_grpo | rloo (kwargs: eps)")
    post: list[StageSpec] = Field([], description="advantage clipping / scaling")
    select: list[StageSpec] = Field([StageSpec(name="degenerate_filter")], description="which rows train, e.g. d3s_samples")
    tokens: list[StageSpec] = Field([], description="per-token loss weights, e.g. d3s_tokens")
    policy_loss: str = "ppo_clip"
    clip_low: float = Field(0.2, ge=0)
    clip_high: float = Field(0.2, ge=0)
    dual_clip: float | None = Field(None, gt=1, description="dual-clip constant c > 1 for negative advantages")
    aggregation: str = "token-mean"
    kl_coef: float = Field(0.0, ge=0)
    kl_estimator: str = "k3"
    tis_cap: float | None = Field(None, gt=0, description="truncated importance sampling on learner/rollout ratio")
    epochs: int = Field(1, ge=1, description="optimizer passes over each batch")
    minibatches: int = Field(1, ge=1, description="optimizer steps per pass")

    @field_validator("combiner", "advantage", mode="before")
    @classmethod
    def _one_spec(cls, v: Any) -> Any:
        return _as_spec(v)

    @field_validator("shape", "post", "select", "tokens", mode="before")
    @classmethod
    def _spec_list(cls, v: Any) -> Any:
        return [_as_spec(x) for x in v] if isinstance(v, list) else _as_spec(v)


class OptimConfig(Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-5, ge=0, description="0 trains nothing (a control run)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="each in [0, 1)")
    eps: float = Field(1e-8, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm")

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class LoRAConfig(Section):
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: float = Field(16.0, gt=0, description="scaling is alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="keep 0: dropout makes learner logprobs noisy vs the rollout")
    target_modules: str | list[str] = Field("all-linear", description="linear layer names, or 'all-linear'")
    layers: list[int] | None = Field(None, description="decoder layer indices that get adapters (None: all); the top layers only cuts the backward pass short")
    sync: Literal["adapter", "merge"] = Field(
        "adapter", description="adapter: send A/B only; merge: send merged weights of the targeted layers"
    )

    @model_validator(mode="after")
    def _layers_with_names(self) -> "LoRAConfig":
        if self.layers is not None and isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ValueError(f"learner.lora.layers needs target_modules as a list of names or 'all-linear', got '{self.target_modules}'")
        return self


class SparseConfig(Section):
    mask: Literal["random", "grad_warmup", "checkpoint_diff", "file"] = "random"
    density: float = Field(0.2, gt=0, le=1, description="fraction of each matrix that trains (random, grad_warmup)")
    seed: int = Field(0, ge=0)
    warmup_steps: int = Field(4, ge=1, description="grad_warmup: updates whose |grad| is summed before the mask is set")
    diff_base: str | None = Field(None, description="checkpoint_diff: model folder before training (this run's start)")
    diff_tuned: str | None = Field(None, description="checkpoint_diff: model folder after a training run from diff_base")
    diff_tol: float = Field(0.0, ge=0, description="checkpoint_diff: |delta| <= tol counts as unchanged")
    file: str | None = Field(None, description="mask file (safetensors of flat indices) written by a previous run")


class LearnerConfig(Section):
    update: Literal["full", "lora", "sparse"] = Field("full", description="which parameters train and what a sync sends")
    lora: LoRAConfig = LoRAConfig()
    sparse: SparseConfig = SparseConfig()

    @model_validator(mode="after")
    def _mask_source_given(self) -> "LearnerConfig":
        s = self.sparse
        if self.update == "sparse" and s.mask == "file" and not s.file:
            raise ValueError("learner.sparse.mask=file needs learner.sparse.file (a mask file written by a previous run)")
        if self.update == "sparse" and s.mask == "checkpoint_diff" and not (s.diff_base and s.diff_tuned):
            raise ValueError("learner.sparse.mask=checkpoint_diff needs learner.sparse.diff_base and learner.sparse.diff_tuned (model folders)")
        return self


class TrainConfig(Section):
    steps: int = Field(100, ge=0)
    max_rollouts: int | None = Field(
        None, ge=1, description="also stop once this many completions were generated: equal-compute comparisons of samplers "
        "that draw different amounts per step (lr schedules and stage progress still count train.steps)"
    )
    prompts_per_step: int = Field(8, ge=1)
    micro_batch_size: int = Field(64, ge=1, description="sequences per learner forward/backward")
    warm_start: Literal["none", "sft"] = "none"
    async_rollout: bool = Field(
        False, description="generate step t+1 while the learner trains on step t (one step off-policy)"
    )
    stream_parts: int = Field(
        1, ge=1, description="split each step's prompts into this many parts: the learner computes gradients "
        "on one while the rollout worker generates the next (same on-policy update; docs/performance.md)",
    )
    eval_before: bool = False
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0: never)")
    eval_after: bool = True
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = Field(2, ge=1)
    parity_check_every: int = Field(0, ge=0, description="rollout/learner logprob parity check every N syncs")
    max_restarts: int = Field(
        2, ge=0, description="Ray restarts a dead rollout worker (weights re-sent, the call retried) and a dead learner is "
        "replaced by resuming from the last checkpoint, each at most this many times per run (cluster.mode=ray)",
    )
    max_empty_steps: int = Field(
        3, ge=0, description="stop the run after this many steps in a row in which no completion had a known reward "
        "(every reward NaN, e.g. a failing verifier), naming the cause (0: never stop)",
    )
    parity_tolerance: float = Field(1e-3, ge=0)


class ClusterConfig(Section):
    mode: Literal["ray", "local"] = "ray"
    address: str | None = Field(None, description="existing Ray cluster; None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1)
    rollout_workers: int = Field(
        1, ge=1, description="rollout workers, each with its own engine; requests are spread over them by prompt, "
        "and every weight sync reaches all of them (docs/cluster.md)"
    )
    rollout_gpus: float = Field(0, ge=0, description="GPUs Ray gives each rollout worker")
    learner_gpus: float = Field(0, ge=0, description="GPUs Ray gives the learner (each rank of a learner group)")
    learner_ranks: int = Field(
        1, ge=1, description="data-parallel learner ranks (torch.distributed: gloo on CPU, NCCL on GPUs), each its own "
        "Ray actor; they split every minibatch and all-reduce the gradients (docs/cluster.md)"
    )
    learner_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement-group strategy of the learner ranks: PACK on as few nodes as fit, SPREAD over nodes"
    )
    placement: Literal["separate", "colocated"] = Field(
        "separate", description="separate: a learner actor and a rollout actor, weights synced through the object "
        "store; colocated: one actor holds both over the same weights (a sync is nothing or an in-place copy; with "
        "vLLM on a GPU the engine sleeps while the learner trains). docs/placement.md"
    )


class LogConfig(Section):
    """Metric sinks besides <run dir>/metrics.jsonl (docs/tracking.md)."""

    progress: bool = Field(True, description="progress on the console: live bars on a terminal, plain lines otherwise")
    tensorboard: bool = Field(True, description="<run dir>/tb when tensorboard is installed, else skipped")
    every: int = Field(
        10, ge=1, description="a training progress line every N steps when the output is not a terminal "
        "(metrics.jsonl and the sinks get every step)",
    )
    wandb: bool = Field(False, description="log to Weights & Biases (pip install 'rlpost[wandb]'); files under <run dir>/wandb")
    wandb_project: str = Field("rlpost", description="W&B project (the run is named after the run dir)")
    wandb_mode: Literal["online", "offline", "disabled"] = Field(
        "offline", description="offline writes locally for `wandb sync` later; online uploads live (needs a login)"
    )
    mlflow: bool = Field(False, description="log to MLflow (pip install 'rlpost[mlflow]')")
    mlflow_uri: str | None = Field(None, description="tracking URI; None: a local store, sqlite:///<run dir>/mlflow.db")
    mlflow_experiment: str = Field("rlpost", description="MLflow experiment, created when missing (runs are named after the run dir)")


class Config(Section):
    description: str = ""
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    sft: SFTConfig = SFTConfig()
    eval: EvalConfig = EvalConfig()
    rollout: RolloutConfig = RolloutConfig()
    sampler: SamplerConfig = SamplerConfig()
    verify: VerifyConfig = VerifyConfig()
    rewards: list[RewardSpec] = [RewardSpec(name="correctness", kwargs={"verifier": "math"})]
    algo: AlgoConfig = AlgoConfig()
    optim: OptimConfig = OptimConfig()
    learner: LearnerConfig = LearnerConfig()
    train: TrainConfig = TrainConfig()
    callbacks: list[CallbackSpec] = Field(
        [], description="run between steps, in order, before evaluation (train.eval_*) and checkpoints (train.save_every)"
    )
    cluster: ClusterConfig = ClusterConfig()
    log: LogConfig = LogConfig()

    @field_validator("callbacks", mode="before")
    @classmethod
    def _callback_specs(cls, v: Any) -> Any:
        return [_as_spec(x) for x in v] if isinstance(v, list) else [_as_spec(v)]  # one name or spec: a list of one

    @field_validator("rewards")
    @classmethod
    def _unique_reward_names(cls, v: list[RewardSpec]) -> list[RewardSpec]:
        names = [r.name for r in v]
        if len(set(names)) != len(names):
            raise ValueError(f"reward names must be unique, got {names}")
        return v

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir.format(name=self.run.name))


# ---------------------------------------------------------------- loading and overrides

def resolve_recipe(recipe: str) -> Path:
    """A recipe is a YAML path, or a name under recipes/ ('quickstart')."""
    path = Path(recipe)
    if path.is_file():
        return path
    for cand in (RECIPES_DIR / recipe, RECIPES_DIR / f"{recipe}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"recipe file not found: {recipe} (see `rlpost recipes`)")


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_override(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.0.c=value` in a nested dict/list tree, creating dicts on the way."""
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override '{dotted}': index '{key}' is not in a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
            continue
        if last:
            node[key] = value
        else:
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            node = nxt


def _format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif e["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        elif e["type"] == "value_error" and isinstance(e.get("input"), (dict, list)):  # a section's or list's own check
            parts.append(f"'{loc}': {e['msg'].removeprefix('Value error, ')}")
        else:
            got = e.get("input")
            got_s = repr(got) if not isinstance(got, dict) and len(repr(got)) <= 80 else type(got).__name__
            hint = ""
            if e["type"] == "string_type" and isinstance(got, dict):
                hint = "; a value in {braces} reads as a YAML mapping: quote it, e.g. key=\"'{question}'\""
            parts.append(f"'{loc}': {e['msg'].removeprefix('Value error, ')} (got {got_s}){hint}")
    return f"{source}: " + "; ".join(parts)


def _defaults_tree() -> dict[str, Any]:
    return Config().model_dump(mode="json")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _OPAQUE_DICTS:
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# Free-form dicts and whole component specs are replaced by a recipe, not merged key by key.
_OPAQUE_DICTS = {"task_kwargs", "kwargs", "combiner", "advantage"}

# Keys that changed meaning: a recipe still using one gets a line saying what to write instead.
_RENAMED = {
    "algo.selector": "algo.select, a list of stages: e.g. algo.select=[{name: degenerate_filter}]",
    "algo.adv_eps": "the advantage stage's kwargs: e.g. algo.advantage={name: grpo, kwargs: {eps: 1.0e-6}}",
}


def _check_renamed(tree: dict[str, Any], source: str) -> None:
    for dotted, instead in _RENAMED.items():
        node: Any = tree
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"{source}: '{dotted}' is no longer a key: use {instead}")


def _normalize_specs(tree: dict[str, Any]) -> None:
    """Bare stage names -> {name: ...}, so that overrides such as algo.advantage.kwargs.eps can index them."""
    if isinstance(tree.get("callbacks"), list):
        tree["callbacks"] = [_as_spec(x) for x in tree["callbacks"]]
    algo = tree.get("algo")
    if not isinstance(algo, dict):
        return
    for key in ("combiner", "advantage"):
        if key in algo:
            algo[key] = _as_spec(algo[key])
    for key in ("shape", "post", "select", "tokens"):
        if isinstance(algo.get(key), list):
            algo[key] = [_as_spec(x) for x in algo[key]]


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, or a ConfigError naming the file, line and column."""
    text = read_utf8(path, "recipe", ConfigError)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None


def load_config(recipe: str | None, overrides: list[str] | None = None) -> Config:
    """Recipe YAML + `key=value` overrides -> validated Config, or ConfigError."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if recipe is not None:
        path = resolve_recipe(recipe)
        source = str(path)
        loaded = _read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(loaded).__name__}")
        tree = loaded
    _check_renamed(tree, source)
    # Overrides go onto the full defaults tree so `verify.verifiers.0.fn=...` can index lists.
    full = _merge(_defaults_tree(), tree)
    _normalize_specs(full)
    for item in overrides or []:
        key, _, raw = item.partition("=")
        if "=" not in item or "" in key.strip().split("."):
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        if key.strip() in _RENAMED:
            raise ConfigError(f"override '{key.strip()}' is no longer a key: use {_RENAMED[key.strip()]}")
        try:
            apply_override(full, key.strip(), _parse_value(raw))
        except (AttributeError, TypeError):
            raise ConfigError(f"override '{key.strip()}': '{key.strip().rsplit('.', 1)[0]}' is not a section") from None
        _normalize_specs(full)
    if overrides:
        source = f"{source} + overrides"
    try:
        return Config.model_validate(full)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def list_recipes() -> list[tuple[str, str]]:
    """(name, one-line description) for every recipe under recipes/ (``erank/smollm2`` for a subfolder's)."""
    out = []
    for path in sorted(RECIPES_DIR.rglob("*.yaml")):
        try:
            loaded = _read_yaml(path) or {}
            desc = loaded.get("description", "") if isinstance(loaded, dict) else "(not a mapping of sections)"
        except ConfigError:
            desc = "(unreadable: `rlpost train` on it says why)"
        out.append((path.relative_to(RECIPES_DIR).with_suffix("").as_posix(), str(desc).strip().splitlines()[0] if desc else ""))
    return out


def cache_dir() -> Path:
    """Where built models and converted checkpoints are cached."""
    return Path(os.environ.get("RLPOST_CACHE", Path.home() / ".cache" / "rlpost"))
