"""The fused decoding path: one batched forward gives both the base's and LoRA reward models' next-token logits.

When the guide's reward models are LoRA adapters over the very weights of the base being guided, each reward model
is the base plus a low-rank delta. A batch of (k+1)·B rows (the base's B rows, then the same B rows again for each
of the k adapters) goes through the base once, and each adapted layer adds adapter j's delta to its own block:

    out[jB:(j+1)B] += scale_j · (x[jB:(j+1)B] A_jᵀ) B_jᵀ        for j = 1..k

The weights are read once per step instead of k+1 times, and one copy of them is in memory instead of k+1. Where
decoding is bound by memory bandwidth and per-step overhead, 2B rows cost much less than two batches of B. Not
everywhere: on the 2-core CPU this was measured on, MKL's 2-row matrix product costs about two 1-row ones, so
the gain at batch 1 comes mostly from the output layer, which runs through oneDNN on CPU (`onednn_forward`; see
the README's measurements); from about 8 rows up the product is nearly flat in rows.

It runs inside transformers' own `generate`: forward hooks on the base (rows repeated per block on the way in, the
reward blocks taken off on the way out), a `DynamicCache` whose beam reordering moves every block, and a
`TARoProcessor` that reads the reward blocks instead of running reward models. Nothing here decodes on its own.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import DynamicCache, PreTrainedModel

from .processor import RewardState, TARoProcessor, positions_from_mask, tensor_per_model

_PEFT_PREFIX = "base_model.model."
PRIVATE_TORCH_ENV = "TARO_NO_PRIVATE_TORCH"
"""Set to 1 to keep the fused path on torch's public API alone: no `Tensor._version` (every call checks the
model's weights again) and no oneDNN inner product for the output layer (nn.Linear's own). The tokens are the same."""


def private_torch(feature: str) -> bool:
    """Whether the fused path may use the private torch `feature` ("version" or "onednn"): it exists in this torch,
    and `TARO_NO_PRIVATE_TORCH` is not set. Each use has a public fallback that decodes the same tokens."""
    if os.environ.get(PRIVATE_TORCH_ENV, "").strip() not in ("", "0"):
        return False
    if feature == "version":
        return hasattr(torch.Tensor, "_version")
    if feature == "onednn":
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    raise ValueError(f"unknown private torch feature {feature!r}")


class FusedNotApplicable(ValueError):
    """The fused path cannot decode with this guide and model; the message says why (the processor path can)."""


@dataclass
class LoRAWeights:
    """A LoRA adapter as plain tensors: for each adapted linear module, `(A [r, in], B [out, r])` and one scale."""

    base_model_name_or_path: str | None
    scale: float
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> LoRAWeights:
        """Read a peft LoRA adapter folder; refuse what the delta `scale · B A x` does not describe."""
        from peft import LoraConfig, PeftConfig

        folder = Path(folder)
        config = PeftConfig.from_pretrained(str(folder))
        if not isinstance(config, LoraConfig):
            raise FusedNotApplicable(
                f"the adapter in {folder} is a {config.peft_type} adapter, which the fused path does not implement."
            )
        unsupported = [
            what
            for what, present in (
                ("DoRA", config.use_dora),
                ("modules_to_save", config.modules_to_save),
                ("trained biases", config.bias != "none"),
                ("fan_in_fan_out (GPT-2 Conv1D) layers", config.fan_in_fan_out),
                ("per-module ranks or scales", config.rank_pattern or config.alpha_pattern),
                ("layer replication", config.layer_replication),
                ("lora_bias", config.lora_bias),
                ("trainable_token_indices", config.trainable_token_indices),
            )
            if present
        ]
        if unsupported:
            raise FusedNotApplicable(
                f"the adapter in {folder} uses {', '.join(unsupported)}, which the fused path does not implement."
            )
        r = config.r
        scale = config.lora_alpha / (math.sqrt(r) if config.use_rslora else r)
        if not (folder / "adapter_model.safetensors").is_file():
            raise FusedNotApplicable(
                f"the adapter in {folder} has no adapter_model.safetensors (the fused path reads "
                "only safetensors; resave it with save_pretrained(safe_serialization=True))."
            )
        weights = load_file(folder / "adapter_model.safetensors")
        modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, a in weights.items():
            if ".lora_embedding_" in key:
                raise FusedNotApplicable(
                    f"the adapter in {folder} adapts an embedding, which the fused path does not implement."
                )
            if not key.endswith((".lora_A.weight", ".lora_B.weight")):
                # Anything else (lora_bias's lora_B.bias, trainable_token_indices' token deltas, ...) changes the
                # reward model in a way `scale · B A x` does not describe: decoding fused would ignore it.
                raise FusedNotApplicable(
                    f"the adapter in {folder} holds {key!r}, which is not a LoRA A or B matrix (lora_bias, "
                    "trainable_token_indices?): the fused path implements only the delta scale · B A x."
                )
            if key.endswith(".lora_A.weight"):
                name = key.removesuffix(".lora_A.weight").removeprefix(_PEFT_PREFIX)
                modules[name] = (a, weights[key.replace(".lora_A.", ".lora_B.")])
        return cls(config.base_model_name_or_path, scale, modules)


def check_same_base(model: PreTrainedModel, lora: LoRAWeights) -> None:
    """Raise `FusedNotApplicable` unless `model` has exactly the weights the adapter was trained on.

    The adapter names its base (`base_model_name_or_path`); its weights are read memory-mapped from that model's
    safetensors and compared tensor by tensor with `model`'s, bitwise in the model's dtype. Never assumed.
    """
    from .models import resolve

    try:
        folder = Path(resolve(lora.base_model_name_or_path))
    except FileNotFoundError as err:
        raise FusedNotApplicable(
            f"the adapter's base cannot be read to compare its weights with the model's: {err}"
        ) from err
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FusedNotApplicable(f"no safetensors weights in {folder} to compare with the model's.")
    state = model.state_dict()
    compared = 0
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                mine = state.get(key)
                if mine is None:
                    raise FusedNotApplicable(
                        f"the model has no weight {key!r} of the adapter's base "
                        f"{lora.base_model_name_or_path!r}: another architecture."
                    )
                if not _same_tensor(mine, f.get_slice(key)):
                    raise FusedNotApplicable(
                        f"the model's weight {key!r} differs from the adapter's base {lora.base_model_name_or_path!r}."
                    )
                compared += 1
    missing = [name for name in lora.modules if f"{name}.weight" not in state]
    if missing:
        raise FusedNotApplicable(f"the model has no module {missing[0]!r} that the adapter adapts.")
    if compared == 0:
        raise FusedNotApplicable("no weights were compared.")


class FusedAdapter:
    """A guide's LoRA adapter as the fused path sees it: its tensors (read once) and, per model, whether the model
    holds exactly the adapter's base (checked once per model and state of its parameters)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._lora: LoRAWeights | None = None
        self._refused: str | None = None
        # model -> (its parameters' storage and version, why not fused or None); weak keys: a freed model's
        # verdict never outlives it, and a model whose weights were replaced since is checked again.
        self._verdicts: weakref.WeakKeyDictionary[PreTrainedModel, tuple[tuple, str | None]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def lora(self) -> LoRAWeights:
        """The adapter's tensors; `FusedNotApplicable` if the fused path cannot represent the adapter."""
        if self._lora is None:
            if self._refused is None:
                try:
                    self._lora = LoRAWeights.from_folder(self.folder)
                except FusedNotApplicable as err:
                    self._refused = str(err)
            if self._refused is not None:
                raise FusedNotApplicable(self._refused)
        return self._lora

    def base_verdict(self, model: PreTrainedModel) -> str | None:
        """Why `model` is not the adapter's base (None: it is), cached until its parameters change."""
        # A parameter's version counter moves with every in-place change: the verdict holds until one does. Without
        # it (a torch that drops the private counter, or TARO_NO_PRIVATE_TORCH), every call compares the weights.
        versions = private_torch("version")
        state = tuple((p.data_ptr(), p._version if versions else None) for p in model.parameters())
        cached = self._verdicts.get(model)
        if cached is None or cached[0] != state or not versions:
            try:
                check_same_base(model, self.lora)
                cached = (state, None)
            except FusedNotApplicable as err:
                cached = (state, str(err))
            self._verdicts[model] = cached
        return cached[1]


_MODEL_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_LOCK = threading.Lock()


def _model_lock(model: torch.nn.Module) -> threading.RLock:
    with _MODEL_LOCKS_LOCK:
        return _MODEL_LOCKS.setdefault(model, threading.RLock())


_UNSUPPORTED_KWARGS = (
    ("inputs_embeds", "inputs_embeds"),
    ("cache", "a cache of your own"),
    ("past_key_values", "a cache of your own"),
    ("assistant_model", "assisted decoding"),
    ("prompt_lookup_num_tokens", "prompt-lookup decoding"),
)


def why_not_fused(
    model: PreTrainedModel,
    adapter: FusedAdapter | Sequence[FusedAdapter | None] | None,
    generate_kwargs: dict[str, Any],
) -> str | None:
    """Every reason the fused path cannot decode one `generate` call, decided here and nowhere else (None: it can).

    The fused path needs: every reward model a LoRA adapter it can represent; `model` holding exactly each adapter's
    base weights; plain `nn.Linear` layers where an adapter adapts; no accelerate hooks (offload, or a model spread
    over devices: the patched forwards would bypass them); a dynamic cache; `input_ids`; no assisted decoding.
    """
    adapters = [adapter] if adapter is None or isinstance(adapter, FusedAdapter) else list(adapter)
    if any(a is None for a in adapters):
        return (
            "the guide's reward model is not a LoRA adapter."
            if len(adapters) == 1
            else ("not every reward model of the guide is a LoRA adapter.")
        )
    for key, what in _UNSUPPORTED_KWARGS:
        if generate_kwargs.get(key) is not None:
            return f"{what} is not supported by the fused path."
    config = generate_kwargs.get("generation_config") or model.generation_config
    cache = generate_kwargs.get("cache_implementation", getattr(config, "cache_implementation", None))
    if cache not in (None, "dynamic"):
        return f"cache_implementation={cache!r}: the fused path needs a dynamic cache."
    hooked = next((name for name, module in model.named_modules() if hasattr(module, "_hf_hook")), None)
    if hooked is not None:
        return (
            f"the model has accelerate hooks (at {hooked or 'the top'}: offload, or a model spread over "
            "devices with device_map), which the fused path's patched forwards would bypass."
        )
    modules = dict(model.named_modules())
    for one in adapters:
        try:
            lora = one.lora
        except FusedNotApplicable as err:
            return str(err)
        for name in lora.modules:
            if type(modules.get(name)) is not torch.nn.Linear:
                return f"the adapted module {name!r} is not a plain nn.Linear in this model."
        verdict = one.base_verdict(model)
        if verdict is not None:
            return verdict
    return None


def _same_tensor(mine: torch.Tensor, theirs: Any, rows_per_read: int = 256) -> bool:
    """`mine` equals the file's tensor, in `mine`'s dtype (a bfloat16 load of these weights is the same base).

    Read a few rows at a time: reading whole tensors would leave the process holding a second copy of the base in
    freed-but-kept allocator memory, which is what the fused path exists to avoid.
    """
    if tuple(mine.shape) != tuple(theirs.get_shape()):
        return False
    if mine.ndim == 0:
        return bool(torch.equal(mine.cpu(), theirs[:].to(mine.dtype)))
    for start in range(0, mine.shape[0], rows_per_read):
        chunk = theirs[start : start + rows_per_read]
        if not torch.equal(mine[start : start + rows_per_read].cpu(), chunk.to(mine.dtype)):
            return False
    return True


class FusedCache(DynamicCache):
    """A `DynamicCache` over (k+1)·B rows (base rows, then each adapter's block) that `generate` believes holds B."""

    def __init__(self, *args: Any, blocks: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.blocks = blocks

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(self._every_block(beam_idx))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(self._every_block(indices))

    def _every_block(self, rows: torch.Tensor) -> torch.Tensor:
        block = self.layers[0].keys.shape[0] // self.blocks
        return torch.cat([rows + j * block for j in range(self.blocks)])


class FusedForward:
    """While active (`with`), `model` runs (k+1)·B rows per forward and keeps the k reward blocks of its output aside.

    - a pre-hook repeats `input_ids`, `attention_mask` and position ids once per block (positions recomputed from
      the mask, as the processor path computes them for its reward models);
    - each adapted `nn.Linear` adds adapter j's LoRA delta to block j of its output (its `forward`, while active);
    - a hook on the model's output returns the base block to `generate` and keeps the reward blocks for
      `FusedProcessor` (last position's logits, and the last hidden state when the router reads it).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        lora: LoRAWeights | Sequence[LoRAWeights],
        want_hidden: bool = False,
        reward_input_ids: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        reward_attention_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
    ):
        loras = [lora] if isinstance(lora, LoRAWeights) else list(lora)
        self.model = model
        self.want_hidden = want_hidden
        self.blocks = len(loras) + 1
        prompts = zip(
            tensor_per_model(reward_input_ids, len(loras), "reward_input_ids"),
            tensor_per_model(reward_attention_mask, len(loras), "reward_attention_masks"),
        )
        # Each adapter's own reward prompt, or None where it reads the base's.
        self.reward_prompts = [
            None if ids is None else (ids, torch.ones_like(ids) if mask is None else mask) for ids, mask in prompts
        ]
        # With reward prompts of their own: how many pad columns each block carries, and each block's prompt mask.
        self._pads: list[int] = []
        self._prompt_masks: list[torch.Tensor] | None = None
        modules = dict(model.named_modules())
        self._groups: list[_SharedInput] = []
        self._members: dict[str, list[tuple[_SharedInput, torch.Tensor]]] = {}
        for block, one in enumerate(loras, start=1):
            # Sibling projections (q/k/v, gate/up) usually read the same input: one x @ [A_q A_k A_v]ᵀ serves them.
            siblings: dict[tuple[str, int], list[str]] = {}
            for name in one.modules:
                layer = modules[name]  # a plain nn.Linear: `why_not_fused` checked
                siblings.setdefault((name.rpartition(".")[0], layer.in_features), []).append(name)
            for names in siblings.values():
                like = modules[names[0]].weight
                a_t = [one.modules[n][0].T.to(like.device, like.dtype) for n in names]
                group = _SharedInput(torch.cat(a_t, dim=1).contiguous(), len(names), block, self.blocks)
                self._groups.append(group)
                start = 0
                for n, a in zip(names, a_t):
                    # Bᵀ padded with zero rows to the group's stacked rank: x @ [A_q A_k A_v]ᵀ multiplies it as is,
                    # one addmm and no slicing per layer; the zero rows cost nothing at these ranks.
                    b = one.modules[n][1] * one.scale
                    b_t = torch.zeros(group.a_t.shape[1], b.shape[0], dtype=like.dtype, device=like.device)
                    b_t[start : start + a.shape[1]] = b.T.to(like.device, like.dtype)
                    self._members.setdefault(n, []).append((group, b_t))
                    start += a.shape[1]
        self._handles: list[Any] = []
        self._patched: list[torch.nn.Module] = []
        self._reward: list[SimpleNamespace] | None = None

    def __enter__(self) -> FusedForward:
        # The hooks and patched forwards change the model object itself: one fused decode per model at a time, so
        # threads sharing a model (a server, lm-eval) wait for each other instead of decoding through each other's.
        self._lock = _model_lock(self.model)
        self._lock.acquire()
        modules = dict(self.model.named_modules())
        self._handles.append(self.model.register_forward_pre_hook(self._double, with_kwargs=True))
        self._handles.append(self.model.register_forward_hook(self._split, with_kwargs=True))
        # An instance `forward` rather than a forward hook: 200-odd hooks per step cost as much as the delta itself.
        self._patched = [modules[name] for name in self._members]
        for name, deltas in self._members.items():
            modules[name].forward = _lora_forward(modules[name], deltas)
        head = self.model.get_output_embeddings()
        if onednn_applies(head) and head not in self._patched:
            head.forward = onednn_forward(head)
            self._patched.append(head)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._patched:
            del module.forward  # back to nn.Linear.forward
        self._patched = []
        self._lock.release()
        for group in self._groups:
            group.x = group.xa = None

    def pop_reward_outputs(self) -> list[SimpleNamespace]:
        """The reward blocks of the last forward (what each reward model's forward would have returned)."""
        if self._reward is None:
            raise RuntimeError("The fused forward has not run for this step.")
        reward, self._reward = self._reward, None
        return reward

    def _double(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            kwargs = {"input_ids": args[0], **kwargs}
        ids = kwargs.get("input_ids")
        if ids is None:
            raise FusedNotApplicable("the fused path needs input_ids (not inputs_embeds).")
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.ndim != 2:
            raise FusedNotApplicable("the fused path needs a 2D attention mask (a dynamic cache, not static).")
        if any(prompt is not None for prompt in self.reward_prompts):
            ids, mask = self._with_reward_prompts(ids, mask)
        else:
            ids = torch.cat([ids] * self.blocks)
            mask = None if mask is None else torch.cat([mask] * self.blocks)
        kwargs["input_ids"] = ids
        if mask is not None:
            kwargs["attention_mask"] = mask
            kwargs["position_ids"] = positions_from_mask(mask, ids.shape[1])  # as the processor path's reward forward
        elif kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = torch.cat([kwargs["position_ids"]] * self.blocks)
        if self.want_hidden:
            kwargs["output_hidden_states"] = True
        return (), kwargs

    def _with_reward_prompts(self, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Base rows, then each adapter's rows, whose prompt is its own reward prompt (or the base's): every block
        left-padded to one length.

        The first call (prefill) lays out the prompts; later calls extend each block's mask: a block reading the
        base's prompt takes `generate`'s mask (padded by its pad columns), one with its own prompt takes its prompt
        mask and one column per token generated since.
        """
        rows = ids.shape[0]
        mask = torch.ones_like(ids) if mask is None else mask
        if self._prompt_masks is None:
            blocks = [(ids, mask)]
            for prompt in self.reward_prompts:
                if prompt is None:
                    blocks.append((ids, mask))
                    continue
                r_ids, r_mask = (t.to(ids.device) for t in prompt)
                if rows % r_ids.shape[0]:
                    raise ValueError(f"reward_input_ids has {r_ids.shape[0]} rows but generate is decoding {rows}.")
                # generate expands prompts with repeat_interleave for num_beams / num_return_sequences; so do we.
                blocks.append(
                    (
                        r_ids.repeat_interleave(rows // r_ids.shape[0], dim=0),
                        r_mask.repeat_interleave(rows // r_mask.shape[0], dim=0),
                    )
                )
            width = max(block_ids.shape[1] for block_ids, _ in blocks)
            self._pads = [width - block_ids.shape[1] for block_ids, _ in blocks]
            self._base_len = ids.shape[1]
            self._prompt_masks = [_left_pad(m, pad) for (_, m), pad in zip(blocks, self._pads)]
            return (
                torch.cat([_left_pad(block_ids, pad) for (block_ids, _), pad in zip(blocks, self._pads)]),
                torch.cat(self._prompt_masks),
            )
        generated = mask.shape[1] - self._base_len
        masks = [_left_pad(mask, self._pads[0])]
        for j, prompt in enumerate(self.reward_prompts, start=1):
            if prompt is None:
                masks.append(_left_pad(mask, self._pads[j]))
            else:
                own = self._prompt_masks[j]
                masks.append(torch.cat([own, own.new_ones(rows, generated)], dim=1))
        return torch.cat([ids] * self.blocks), torch.cat(masks)

    def _split(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        rows = output.logits.shape[0] // self.blocks
        self._reward = []
        for j in range(1, self.blocks):
            block = slice(j * rows, (j + 1) * rows)
            hidden = output.hidden_states[-1][block] if self.want_hidden else None
            self._reward.append(
                SimpleNamespace(logits=output.logits[block], hidden_states=None if hidden is None else (hidden,))
            )
        output.logits = output.logits[:rows]
        if output.get("hidden_states") is not None:
            output.hidden_states = tuple(h[:rows] for h in output.hidden_states)
        return output


def _left_pad(t: torch.Tensor, columns: int) -> torch.Tensor:
    """`t` with `columns` zero columns on the left (masked out: the token ids there are never attended to)."""
    return torch.cat([t.new_zeros(t.shape[0], columns), t], dim=1) if columns else t


class _SharedInput:
    """One adapter's stacked Aᵀ of sibling projections, and `x_j @ Aᵀ` for its block j of the input they are reading
    now.

    The input is let go as soon as every sibling has read it: held across layers, the prefill's inputs of all
    layers would stay alive together (hundreds of MB for a batch of long prompts).
    """

    def __init__(self, a_t: torch.Tensor, members: int, block: int, blocks: int):
        self.a_t = a_t
        self.members = members
        self.block = block
        self.blocks = blocks
        self.x: torch.Tensor | None = None
        self.xa: torch.Tensor | None = None
        self.unread = 0

    def project(self, x: torch.Tensor) -> torch.Tensor:
        # Identity, not equality: while the group holds x, a new input can never be the same object.
        if self.x is not x:
            self.x, self.xa, self.unread = x, self.rows(x).reshape(-1, x.shape[-1]) @ self.a_t, self.members
        xa = self.xa
        self.unread -= 1
        if self.unread <= 0:
            self.x = self.xa = None
        return xa

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """This adapter's block of `t`'s rows."""
        size = t.shape[0] // self.blocks
        return t[self.block * size : (self.block + 1) * size]


def _lora_forward(layer: torch.nn.Linear, deltas: list[tuple[_SharedInput, torch.Tensor]]) -> Any:
    """`layer`'s forward plus each adapter's LoRA delta on its block of rows: `out_j += (x_j A_jᵀ)(s_j B_jᵀ)`."""
    weight, bias = layer.weight, layer.bias

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.linear(x, weight, bias)
        for group, b_t in deltas:
            group.rows(out).view(-1, out.shape[-1]).addmm_(group.project(x), b_t)
        return out

    return forward


def onednn_applies(layer: Any) -> bool:
    """Whether `onednn_forward` can run `layer`: a plain float32 `nn.Linear` on the CPU, with oneDNN built in."""
    return (
        type(layer) is torch.nn.Linear
        and layer.weight.device.type == "cpu"
        and layer.weight.dtype == torch.float32
        and private_torch("onednn")
    )


def onednn_forward(layer: torch.nn.Linear) -> Any:
    """`layer`'s forward through oneDNN's inner product instead of MKL's matrix product, when no gradient is wanted.

    For the output layer of a fused step: 2B rows, one position each. MKL's float32 product at 2 rows costs more
    than two 1-row products (SmolLM2's 49152x576 layer: 9.2 ms at 1 row, 22.5 ms at 2 on the 2-core CPU measured),
    oneDNN's reads the weights once (10.8 ms at 2 rows; 12.8 ms at 8, against MKL's 20.9) and needs no copy of them.
    The results agree to float32 rounding, not bitwise. It is not used for the other layers: there, oneDNN is as slow
    as MKL at 2 rows unless given a reordered copy of every weight, which the fused path exists not to hold.
    """
    weight, bias = layer.weight, layer.bias
    usable = True

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal usable
        if usable and not torch.is_grad_enabled() and x.dtype == weight.dtype:
            try:
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            except RuntimeError:  # a CPU oneDNN has no kernel for (a private op): nn.Linear's own from now on
                usable = False
        return torch.nn.functional.linear(x, weight, bias)

    return forward


class FusedProcessor(TARoProcessor):
    """`TARoProcessor` whose reward logits come from the reward blocks of the fused forward, not reward models.

    The mixture, the router, the alpha trace and its beam reordering are the processor's own; only where the
    reward logits come from differs. `model` (the base) stands in for each reward model's configuration.
    """

    def __init__(self, model: PreTrainedModel, fused: FusedForward, **kwargs: Any):
        super().__init__([model] * (fused.blocks - 1), **kwargs)
        self._fused = fused

    def _prefill(self, input_ids: torch.Tensor) -> list[Any]:
        self._prompt_mask(input_ids)  # the processor path's checks of the prompt and its mask, refused alike
        k = self.num_reward_models
        self._state = RewardState(caches=[None] * k, masks=[None] * k, seen_ids=input_ids.clone())
        return self._fused.pop_reward_outputs()

    def _reorder_reward_state(self, order: torch.Tensor) -> None:
        pass  # the reward blocks live in generate's FusedCache, which generate reorders itself

    def _next_reward_output(self, input_ids: torch.Tensor) -> list[Any]:
        return self._fused.pop_reward_outputs()
