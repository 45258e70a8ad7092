"""LoRA updates (peft): the base stays frozen, adapters train; a sync sends A/B or merged weights.

Merging is always out of place in fp32 (W0 + s * B @ A into a new tensor): peft's in-place
merge/unmerge drifts in low precision (spec §4.4), and the training weights must never change.

Rebase (``write``, used by NExt): new effective weights become the adapted layers' base, their
adapters restart (B = 0, A fresh). The run's starting bases are kept, so the KL reference stays
the starting policy, and the moved bases are saved beside the adapter in checkpoints.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import torch

from rlpost.config import Config
from rlpost.learner.modes.base import UpdateMode
from rlpost.sync import AdapterSync, pack

_PEFT_PREFIX = "base_model.model."
REBASED = "rebased_base.safetensors"  # beside the adapter: bases moved by a write (NExt)


def canonical_name(name: str) -> str:
    """peft parameter name -> the Hugging Face checkpoint name the rollout engines use."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX):]
    return name.replace(".base_layer.", ".")


def linear_names(model: torch.nn.Module) -> dict[str, str]:
    """Full module name -> short name of every nn.Linear in `model`."""
    return {n: n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def check_targets(model: torch.nn.Module, targets: str | list[str]) -> None:
    """Every requested target names an existing linear layer; tied embeddings are never targeted."""
    if targets == "all-linear":
        return
    wanted = [targets] if isinstance(targets, str) else list(targets)
    linears = linear_names(model)
    short = sorted(set(linears.values()))
    for t in wanted:
        if not any(full == t or full.endswith("." + t) for full in linears):
            raise ValueError(
                f"learner.lora.target_modules: '{t}' matches no linear layer of the model (linear layers: {', '.join(short)})"
            )
        if t == "lm_head" and getattr(model.config, "tie_word_embeddings", False):
            raise ValueError("learner.lora.target_modules: 'lm_head' shares its weight with the embedding in this model; it cannot carry a LoRA adapter")


def _jsonable(d: dict) -> dict:
    """peft's config dict with sets made lists and enums made strings (for adapter_config.json)."""
    import enum

    def conv(v):
        if isinstance(v, (set, frozenset, tuple)):
            return sorted(conv(x) for x in v) if isinstance(v, (set, frozenset)) else [conv(x) for x in v]
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in d.items()}


class LoRAMode(UpdateMode):
    name = "lora"
    has_reference_view = True

    def __init__(self, cfg: Config, model: torch.nn.Module) -> None:
        from peft import LoraConfig, get_peft_model

        c = cfg.learner.lora
        check_targets(model, c.target_modules)
        targets = c.target_modules
        if c.layers is not None and targets == "all-linear":  # peft takes layer indices with a list of names only
            targets = sorted(set(linear_names(model).values()) - {"lm_head"})
        peft_cfg = LoraConfig(
            r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=targets, bias="none",
            task_type="CAUSAL_LM", layers_to_transform=c.layers,
        )
        super().__init__(cfg, get_peft_model(model, peft_cfg))
        self.peft_config = _jsonable(self.model.peft_config["default"].to_dict())
        self.layers = self._lora_layers()
        self.needs_anchor = True
        self.origin: dict[str, torch.Tensor] = {}  # starting base of every rebased layer (the reference)

    def _lora_layers(self) -> dict[str, torch.nn.Module]:
        """Base weight name -> the peft LoRA layer wrapping it."""
        from peft.tuners.lora import LoraLayer

        out = {}
        for name, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and "default" in module.lora_A:
                out[canonical_name(name) + ".weight"] = module
        return out

    @contextlib.contextmanager
    def reference(self):
        """Adapters off and starting bases in: the run's starting policy, without a second model."""
        moved = {n: self.layers[n].base_layer.weight for n in self.origin}
        with self.model.disable_adapter():
            saved = {n: w.data for n, w in moved.items()}
            try:
                for n, w in moved.items():
                    w.data = self.origin[n]
                yield
            finally:
                for n, w in moved.items():
                    w.data = saved[n]

    # -------------------------------------------------------------- sync

    def _factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        layer = self.layers[name]
        return layer.lora_A["default"].weight, layer.lora_B["default"].weight, float(layer.scaling["default"])

    @torch.no_grad()
    def merged(self, name: str) -> torch.Tensor:
        a, b, s = self._factors(name)
        base = self.layers[name].base_layer.weight
        return torch.addmm(base.float(), b.float(), a.float(), alpha=s)

    def base_weights(self):
        for name, p in self.model.named_parameters():
            if ".lora_" not in name:
                yield canonical_name(name), p

    @torch.no_grad()
    def export(self, version: int) -> Any:
        anchor = self.needs_anchor
        self.needs_anchor = False
        if self.cfg.learner.lora.sync == "merge":
            if anchor:  # every weight once, targeted ones merged
                return pack(version, ((n, self.merged(n) if n in self.layers else p) for n, p in self.base_weights()))
            return pack(version, ((n, self.merged(n)) for n in self.layers), partial=True)
        factors = []
        scales = set()
        for name in self.layers:
            a, b, s = self._factors(name)
            factors += [(f"{name}:A", a), (f"{name}:B", b)]
            scales.add(s)
        if len(scales) != 1:
            raise ValueError(f"adapter sync needs one scaling for all layers, got {sorted(scales)}")
        return AdapterSync(
            version=version, targets=list(self.layers), factors=pack(version, factors), scaling=scales.pop(),
            anchor=pack(version, self.base_weights()) if anchor else None, peft_config=self.peft_config,
        )

    def reset_sync(self) -> None:
        self.needs_anchor = True

    # -------------------------------------------------------------- weights for callbacks

    def weight_matrices(self) -> dict[str, torch.nn.Parameter]:
        return {n: self.layers[n].base_layer.weight for n in self.layers}

    @torch.no_grad()
    def read(self, kind: str) -> dict[str, Any]:
        """``merged``: W0 + s B A of every adapted layer; ``lora``: (A, B, scale) copies."""
        if kind == "merged":
            return {n: self.merged(n).cpu() for n in self.layers}
        if kind == "lora":
            out = {}
            for n in self.layers:
                a, b, s = self._factors(n)
                out[n] = (a.detach().float().cpu().clone(), b.detach().float().cpu().clone(), s)
            return out
        raise ValueError(f"learner.update=lora has no '{kind}' weights to read (it has: merged, lora)")

    @torch.no_grad()
    def write(self, weights: dict[str, torch.Tensor]) -> list[torch.nn.Parameter]:
        """Rebase: each written layer's base becomes the given effective weight and its adapter restarts."""
        unknown = sorted(set(weights) - set(self.layers))
        if unknown:
            raise ValueError(f"cannot write weights {unknown[:3]}: under LoRA only adapted layers can be written")
        reset = []
        for n, w in weights.items():
            layer = self.layers[n]
            base = layer.base_layer.weight
            self.origin.setdefault(n, base.detach().clone())
            base.copy_(w.to(base.dtype))
            layer.reset_lora_parameters("default", True)  # B = 0, A as at the start (torch's generator)
            reset += [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
        return reset

    # -------------------------------------------------------------- state

    def save_model(self, out: Path) -> None:
        from safetensors.torch import save_file

        self.model.save_pretrained(out)  # peft format: adapter_config.json + adapter_model.safetensors
        if self.origin:  # moved bases: the adapter alone would not restore the weights
            save_file({n: self.layers[n].base_layer.weight.detach().contiguous() for n in self.origin}, out / REBASED)

    @torch.no_grad()
    def load_model(self, src: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        result = set_peft_model_state_dict(self.model, load_file(src / "adapter_model.safetensors"))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(f"adapter checkpoint {src} does not match the model: unexpected {unexpected[:3]}")
        if (src / REBASED).is_file():
            for n, w in load_file(src / REBASED).items():
                if n not in self.layers:
                    raise RuntimeError(f"checkpoint {src / REBASED} rebases '{n}', which has no adapter in this run")
                base = self.layers[n].base_layer.weight
                self.origin.setdefault(n, base.detach().clone())
                base.copy_(w)

    def plain_model(self) -> torch.nn.Module:
        return copy.deepcopy(self.model).merge_and_unload()

    def describe(self) -> dict[str, float]:
        d = super().describe()
        d["update/lora_layers"] = float(len(self.layers))
        return d
