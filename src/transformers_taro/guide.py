"""`TARoGuide`: one or more reward models plus a router (or fixed weights), saved, loaded and shared as one folder.

A guide is to a base model what a PEFT adapter is: one folder, `save_pretrained` / `from_pretrained` /
`push_to_hub`, nothing wired by hand. Several named reward models live in one guide as PEFT holds several named
adapters.

    my-guide/
      guide_config.json     method, alpha(s), the reward models' names and order, what it was trained with
      reward_model/         one reward model: a causal LM, or a LoRA adapter over a named base
      reward_models/<name>/ several: one folder per named reward model, each a causal LM or a LoRA adapter
      router/               TARo only: the router (absent for a fixed-weight guide)
      README.md             model card from hub_cards/guide.md
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .cards import push_folder_to_hub, render_card
from .files import check_weight_files, copy_final_files, read_json_object, write_entries_atomically, write_json
from .fused import FusedAdapter, FusedCache, FusedForward, FusedNotApplicable, FusedProcessor, why_not_fused
from .mixing import check_alpha
from .models import could_be_repo_id, is_peft_adapter, load_causal_lm, load_tokenizer, quiet_progress, resolve
from .processor import TARoProcessor, cache_keyword
from .prompts import format_prompt
from .router import TARoRouter, TARoRouterConfig
from .vocabulary import check_same_vocabulary, check_vocabulary_sizes

GUIDE_CONFIG_NAME = "guide_config.json"
REWARD_MODEL_DIR = "reward_model"
REWARD_MODELS_DIR = "reward_models"
ROUTER_DIR = "router"
GUIDE_ENTRIES = (GUIDE_CONFIG_NAME, REWARD_MODEL_DIR, REWARD_MODELS_DIR, ROUTER_DIR, "README.md")
"""What a guide folder holds: `save_pretrained` writes and replaces these, and nothing else."""
METHODS = ("taro", "genarm")
SINGLE_NAME = "default"
"""The name of a guide's reward model when it holds one, unnamed (as PEFT names an adapter)."""
logger = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 64
"""A reward model's name is a folder name: short enough for every filesystem (and a Hub path) with room to spare."""


def check_reward_model_names(names: Any) -> list[str]:
    """The reward models' names as a list, or a `ValueError`: each names a folder (`reward_models/<name>/`) and a
    weight, so each is a plain, unique word."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise ValueError(f"reward_models must be a list of names, got {names!r}.")
    names = list(names)
    if not names:
        raise ValueError("A guide needs at least one reward model; the list of names is empty.")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"Reward model name {name!r}: use letters, digits, '_', '-' or '.' (not first), as it names the "
                f"folder {REWARD_MODELS_DIR}/<name>/."
            )
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"Reward model name {name[:20]}... has {len(name)} characters: use at most {MAX_NAME_LENGTH}, as it "
                f"names the folder {REWARD_MODELS_DIR}/<name>/."
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Reward model name(s) {repeated} given more than once: each reward model needs its own name.")
    folded = [n for n in names if [m.lower() for m in names].count(n.lower()) > 1]
    if folded:
        raise ValueError(
            f"Reward model names {folded} differ only in case: their folders would be one folder on macOS and "
            "Windows. Give them names that differ in more than case."
        )
    return names


def named_reward_models(specs: str | os.PathLike | Sequence[str] | Mapping[str, str]) -> str | dict[str, str]:
    """Reward models as a command line names them: one path or Hub id, or several `name=path` pairs (a mapping
    passes through). One bare path stays a single, unnamed reward model."""
    if isinstance(specs, Mapping):
        return {str(k): str(v) for k, v in specs.items()}
    if isinstance(specs, (str, os.PathLike)):
        specs = [str(specs)]
    specs = [str(spec) for spec in specs]
    if len(specs) == 1 and "=" not in specs[0]:
        return specs[0]
    pairs = [spec.partition("=") for spec in specs]
    bare = [spec for spec, (_, eq, _) in zip(specs, pairs) if not eq]
    if bare:
        raise ValueError(
            f"Several reward models need a name each: pass name=path (e.g. arith={bare[0]}), not {bare[0]!r}."
        )
    empty = [spec for spec, (_, _, path) in zip(specs, pairs) if not path.strip()]
    if empty:
        raise ValueError(
            f"Reward model {empty[0]!r} has an empty path: pass name=path with the reward model's folder, LoRA "
            "adapter folder or Hub id after the '='."
        )
    names = check_reward_model_names([name for name, _, _ in pairs])
    return {name: path for name, (_, _, path) in zip(names, pairs)}


def check_alphas(alpha: Any, names: list[str] | None) -> float | dict[str, float] | None:
    """A guide's fixed weight(s): one number for one unnamed reward model (`names` None), else `{name: alpha}` in the
    models' order (None passes through).

    Every name gets a weight (0 leaves a model out), no weight names a model the guide lacks, and each weight
    obeys `mixing.check_alpha`."""
    if names is None:
        if isinstance(alpha, Mapping):
            raise ValueError(
                f"alpha={dict(alpha)} names reward models, but the guide holds one unnamed reward model: give one "
                "number, or name the reward models (a dict of them, or reward_models=[...])."
            )
        return check_alpha(alpha)
    if alpha is None:
        return None
    if not isinstance(alpha, Mapping):
        raise ValueError(
            f"alpha={alpha!r} for a guide of {len(names)} named reward models {names}: give one weight per model, "
            "e.g. alpha={" + ", ".join(f'"{n}": 1.0' for n in names) + "} (0 leaves a model out)."
        )
    unknown = sorted(set(alpha) - set(names))
    if unknown:
        raise ValueError(f"alpha has weights for {unknown}, which the guide lacks: its reward models are {names}.")
    missing = [n for n in names if alpha.get(n) is None]
    if missing:
        raise ValueError(
            f"alpha has no weight (missing or null) for {missing}: give every reward model a number (0 leaves one out)."
        )
    return {n: check_alpha(alpha[n]) for n in names}


@dataclass
class TARoGuideConfig:
    """What a guide folder records besides its weights (`guide_config.json`).

    Args:
        method: `"taro"` (a router picks alpha per token) or `"genarm"` (fixed weights).
        alpha: GenARM's fixed weight; with several reward models, `{name: weight}`. For a TARo guide, the fixed
            weight(s) chosen for the same reward model(s) on validation: the GenARM baseline that `guide.fixed()`
            decodes with.
        reward_models: The reward models' names, in the order the router weighs them (None: one reward model, in
            `reward_model/`). Each lives in `reward_models/<name>/`.
        alpha_selection: How `alpha` was chosen (split, problems, accuracy per alpha), for the record.
        base_model_name_or_path: The base model the guide was trained next to. Any base with the same vocabulary
            can be guided; this one is the reference.
        vocab_size: The vocabulary the reward model and router share with that base.
        system_prompt: The system prompt of the prompt format used in training (`guide.format_prompt`); None for
            none. The shipped SmolLM2 guide and guides written by `train_router` record the math prompt they use.
        training_summary: Data, steps and losses of training, for the model card.
        evaluation: What was measured with the guide (Markdown: problems, accuracies, command, date), for the
            model card.
    """

    method: str = "taro"
    alpha: float | dict[str, float] | None = None
    reward_models: list[str] | None = None
    alpha_selection: dict[str, Any] | None = None
    base_model_name_or_path: str | None = None
    vocab_size: int | None = None
    system_prompt: str | None = None
    training_summary: str | None = None
    evaluation: str | None = None
    taro_version: str | None = None

    def __post_init__(self) -> None:
        if self.reward_models is not None:
            self.reward_models = check_reward_model_names(self.reward_models)
        self.alpha = check_alphas(self.alpha, self.reward_models)
        vocab = self.vocab_size
        if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1):
            raise ValueError(f"vocab_size must be a positive whole number, got {vocab!r}.")
        for name in ("base_model_name_or_path", "system_prompt", "training_summary", "evaluation", "taro_version"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be text (or null), got {value!r}.")
        if self.alpha_selection is not None and not isinstance(self.alpha_selection, dict):
            raise ValueError(f"alpha_selection must be an object (or null), got {self.alpha_selection!r}.")
        if self.method not in METHODS:
            raise ValueError(f"A guide's method is one of {METHODS}, got {self.method!r}.")
        if self.method == "genarm" and self.alpha is None:
            raise ValueError("A GenARM guide (method='genarm') needs its fixed alpha.")

    @property
    def names(self) -> list[str]:
        """The reward models' names in order (`SINGLE_NAME` for a guide of one unnamed reward model)."""
        return self.reward_models if self.reward_models is not None else [SINGLE_NAME]

    def weights(self) -> float | list[float] | None:
        """The fixed weight(s) in the order the processor takes them: one number, or one per reward model."""
        if isinstance(self.alpha, dict):
            return [self.alpha[n] for n in self.reward_models]
        return self.alpha

    def to_dict(self) -> dict[str, Any]:
        """The settings as `guide_config.json` holds them."""
        return dataclasses.asdict(self)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `guide_config.json` into `save_directory` (atomically), as peft's configs write theirs."""
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        write_json(Path(save_directory) / GUIDE_CONFIG_NAME, self.to_dict())

    @classmethod
    def from_pretrained(
        cls,
        pretrained_guide_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
    ) -> TARoGuideConfig:
        """Read a guide's config from its folder or Hub id (as `TARoGuide.from_pretrained` finds it), without
        loading its models."""
        folder = _guide_folder(pretrained_guide_name_or_path, revision, token, cache_dir, local_files_only)
        return cls.from_file(folder / GUIDE_CONFIG_NAME)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TARoGuideConfig:
        """Read `guide_config.json`; an error names the file and what is wrong in it."""
        data = read_json_object(path)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            # As peft's configs do: a guide saved by a newer version loads, without what this one cannot use.
            logger.warning(
                "%s: ignoring guide settings this version does not know: %s (written by a newer transformers-taro?).",
                path,
                ", ".join(unknown),
            )
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None


class TARoGuide:
    r"""Token-level reward models with a router (TARo) or fixed weights (GenARM): everything guided decoding needs.

    Decoding with a guide draws from :math:`\log p \propto \log p_b + \sum_k \alpha_{k,t} \log p_{r_k}`, with
    :math:`\alpha_{k,t}` from the router, or the fixed `alpha`. One reward model is the case k = 1. See
    [`TARoProcessor`] for what decoding guarantees.

    Args:
        reward_model (`PreTrainedModel`, or a dict of them by name for several): The token-level reward model(s),
            causal LMs sharing the base's vocabulary. A model may be None with its `adapter_folder`: the adapter is
            then merged into a copy of its base on first use by the processor path, and never if the fused path
            decodes (no second copy of the weights).
        router (`TARoRouter`, *optional*): Picks the weights per token (TARo), one per reward model
            (`router.config.num_reward_models`).
        alpha (`float`, or a dict of floats by name for several, *optional*): The fixed weight(s) (GenARM). With a
            router, the fixed weights to compare against (`guide.fixed()`); decoding then uses the router.
        config (`TARoGuideConfig`, *optional*): What the guide was trained with; built from the arguments if not
            given.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): The reward model's tokenizer, checked against a base
            tokenizer where one is passed to `generate`.
        adapter_folder (`str`, or a dict of them by name for several, *optional*): The LoRA adapter folder a merged
            `reward_model` was made from; saving copies the small adapter instead of the merged weights.

    Example:
    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from transformers_taro import TARoGuide
    >>> cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2)
    >>> base, rm = LlamaForCausalLM(cfg).eval(), LlamaForCausalLM(cfg).eval()
    >>> guide = TARoGuide(rm, alpha=1.0)
    >>> out = guide.generate(base, input_ids=torch.tensor([[1, 5, 7]]), max_new_tokens=4, do_sample=False)
    >>> guide.alphas.shape
    torch.Size([1, 4])
    >>> guide.save_pretrained("my-guide")  # guide_config.json, reward_model/, README.md
    >>> TARoGuide.from_pretrained("my-guide").method
    'genarm'
    >>> two = TARoGuide({"arith": rm, "compare": LlamaForCausalLM(cfg).eval()}, alpha={"arith": 1.0, "compare": 0.5})
    >>> out = two.generate(base, input_ids=torch.tensor([[1, 5, 7]]), max_new_tokens=4, do_sample=False)
    >>> two.reward_model_names, two.alphas.shape  # one weight per reward model and token
    (['arith', 'compare'], torch.Size([1, 4, 2]))
    ```
    """

    def __init__(
        self,
        reward_model: PreTrainedModel | Mapping[str, PreTrainedModel | None] | None,
        router: TARoRouter | None = None,
        alpha: float | Mapping[str, float] | None = None,
        config: TARoGuideConfig | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        adapter_folder: str | os.PathLike | Mapping[str, str | os.PathLike | None] | None = None,
    ):
        named = isinstance(reward_model, Mapping) or isinstance(adapter_folder, Mapping)
        if named:
            models = dict(reward_model or {})
            adapters = dict(adapter_folder or {})
            names = check_reward_model_names(list(models) + [n for n in adapters if n not in models])
        else:
            names, models, adapters = [SINGLE_NAME], {SINGLE_NAME: reward_model}, {SINGLE_NAME: adapter_folder}
        if router is None and alpha is None:
            raise ValueError("A guide needs a router (TARo) or a fixed alpha (GenARM); got neither.")
        for name in names:
            if models.get(name) is None and adapters.get(name) is None:
                raise ValueError(
                    "A guide needs a reward model (or the LoRA adapter_folder to load it from)"
                    + (f": none for {name!r}." if named else ".")
                )
            model = models.get(name)
            if model is not None and any(p.is_meta for p in model.parameters()):
                raise ValueError(
                    f"The reward model{f' {name!r}' if named else ''} has weights on the 'meta' device (no data): "
                    "load it with from_pretrained (not inside init_empty_weights), or move it with to_empty() and "
                    "load its weights before building the guide."
                )
        alpha = check_alphas(alpha, names if named else None)
        if router is not None:
            router.config.check_reward_model_count(names)
        sizes = {n: _vocab_size(m) for n, m in models.items() if m is not None}
        for name, size in sizes.items():
            first = next(iter(sizes))
            try:
                check_vocabulary_sizes(sizes[first], size)
            except ValueError:
                raise ValueError(
                    f"The reward models {first!r} ({sizes[first]} tokens) and {name!r} ({size}) do not share one "
                    "vocabulary: every reward model of a guide must have the base's tokenizer."
                ) from None
        if config is None:
            from .version import __version__

            first_model = next((m for m in models.values() if m is not None), None)
            config = TARoGuideConfig(
                method="taro" if router is not None else "genarm",
                alpha=alpha,
                reward_models=names if named else None,
                base_model_name_or_path=router.config.base_model_name_or_path if router is not None else None,
                vocab_size=_vocab_size(first_model) if first_model is not None else None,
                taro_version=__version__,
            )
        elif (config.method == "taro") != (router is not None):
            raise ValueError(
                f"The guide's config says method={config.method!r} but a router was "
                f"{'given' if router is not None else 'not given'}."
            )
        elif config.names != names and (named or config.reward_models is not None):
            raise ValueError(f"The guide's config names the reward models {config.names}, but {names} were given.")
        config.alpha = alpha if alpha is not None else config.alpha
        self._rewards = {name: LazyRewardModel(models.get(name), adapters.get(name)) for name in names}
        self.router = router
        self.config = config
        self.tokenizer = tokenizer
        self._last_call = threading.local()  # each thread's last `generate`: its weights and decoding path
        self.name_or_path: str | None = None  # the folder it was loaded from (`from_pretrained`)

    # -- what it is ------------------------------------------------------------------------------------------

    @property
    def reward_model_names(self) -> list[str]:
        """The reward models' names, in the order of their weights (`["default"]` for one unnamed reward model)."""
        return list(self._rewards)

    @property
    def reward_model(self) -> PreTrainedModel:
        """The reward model as a causal LM (a LoRA adapter merged into a copy of its base, loaded on first use).
        A guide of several reward models has `reward_models` instead."""
        if len(self._rewards) > 1:
            raise ValueError(
                f"This guide holds {len(self._rewards)} reward models ({', '.join(self._rewards)}): use "
                "guide.reward_models[name], or guide.only(name) for a guide on one of them."
            )
        return self._reward.get()

    @property
    def reward_models(self) -> dict[str, PreTrainedModel]:
        """`{name: reward model}` in order (LoRA adapters merged into copies of their base on first use)."""
        return {name: reward.get() for name, reward in self._rewards.items()}

    @property
    def _reward(self) -> LazyRewardModel:
        return next(iter(self._rewards.values()))

    @property
    def method(self) -> str:
        """`"taro"` (router) or `"genarm"` (fixed weights)."""
        return self.config.method

    @property
    def alpha(self) -> float | dict[str, float] | None:
        """The fixed weight (GenARM's; for a TARo guide, the baseline `fixed()` uses); `{name: weight}` for several
        reward models."""
        return self.config.alpha

    @property
    def alphas(self) -> torch.Tensor:
        """`[rows, steps]`: the weight used at each generated token of this thread's last `generate` call, one row
        per returned sequence (with beam search: the returned hypotheses', NaN after a shorter one's end).
        `[rows, steps, K]` for a guide of K > 1 reward models, in the order of `reward_model_names`.

        A convenience: `generate(..., return_dict_in_generate=True)` returns each call's own weights as
        `out.alphas`, which is what code that shares a guide between threads or requests should read."""
        empty = torch.empty(0, 0) if len(self._rewards) == 1 else torch.empty(0, 0, len(self._rewards))
        return getattr(self._last_call, "alphas", empty)

    @property
    def last_path(self) -> str | None:
        """How this thread's last `generate` call decoded: `"fused"` or `"processor"` (None before any call)."""
        return getattr(self._last_call, "path", None)

    def fixed(self, alpha: float | Mapping[str, float] | None = None) -> TARoGuide:
        """The same reward model(s) with fixed weights (GenARM): `alpha`, else the one(s) this guide recorded."""
        alpha = self.config.alpha if alpha is None else alpha
        if alpha is None:
            raise ValueError("This guide records no fixed alpha: pass one, e.g. guide.fixed(0.5) or --alpha 0.5.")
        return self._replace(router=None, config=dataclasses.replace(self.config, method="genarm", alpha=alpha))

    def only(self, name: str, alpha: float | None = None) -> TARoGuide:
        """A GenARM guide on one of this guide's reward models, for comparisons: `alpha`, else the fixed weight this
        guide recorded for it. It shares the reward model (loaded or not) with this guide."""
        if name not in self._rewards:
            raise ValueError(
                f"This guide has no reward model {name!r}; its reward models are {self.reward_model_names}."
            )
        recorded = self.config.alpha.get(name) if isinstance(self.config.alpha, dict) else self.config.alpha
        alpha = recorded if alpha is None else alpha
        if alpha is None:
            raise ValueError(
                f"This guide records no fixed weight for {name!r}: pass one, e.g. guide.only({name!r}, 1.0)."
            )
        config = dataclasses.replace(self.config, method="genarm", alpha=alpha, reward_models=None)
        return self._replace(router=None, config=config, _rewards={name: self._rewards[name]})

    def _replace(self, **changes: Any) -> TARoGuide:
        """A guide sharing this one's reward model (loaded or not), with other parts replaced."""
        guide = TARoGuide.__new__(TARoGuide)
        guide.__dict__.update(self.__dict__)
        guide._last_call = threading.local()
        guide.__dict__.update(changes)
        return guide

    def format_prompt(self, question: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """The prompt in the format the guide was trained on (the base tokenizer's chat template, if it has one)."""
        return format_prompt(question, tokenizer, system=self.config.system_prompt)

    def to(self, device: str | torch.device) -> TARoGuide:
        """Move the reward models (now, or when loaded) and router (not for models spread with `device_map`)."""
        for reward in self._rewards.values():
            reward.to(device)
        if self.router is not None:
            self.router.to(device)
        return self

    # -- decoding --------------------------------------------------------------------------------------------

    def processor(self, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> TARoProcessor:
        """The `TARoProcessor` for one batch (its prompt's `attention_mask`); `kwargs` go to `TARoProcessor`."""
        return TARoProcessor(
            self.reward_model if len(self._rewards) == 1 else list(self.reward_models.values()),
            **self._decoding_weight(),
            attention_mask=attention_mask,
            reward_tokenizer=self.tokenizer if kwargs.get("tokenizer") is not None else None,
            **kwargs,
        )

    @torch.inference_mode()
    def generate(self, model: PreTrainedModel, fused: bool | None = None, **generate_kwargs: Any) -> Any:
        """`model.generate(**generate_kwargs)` guided by this guide.

        Takes everything `generate` takes. Another `logits_processor` list runs after the guidance. A `tokenizer`
        (as `generate` takes for stop strings) is also checked against the guide's. Runs under
        `torch.inference_mode()` (the fused path's in-place updates cost autograd bookkeeping otherwise), so the
        returned tensors are inference tensors.

        With `return_dict_in_generate=True` the output also holds `alphas`, `[rows, steps]` (`[rows, steps, K]` with
        K > 1 reward models): the weight used at each generated token of this call (with beam search, the returned
        hypotheses'), and `decoding`, the path taken. `guide.alphas` holds the same for this thread's last call.
        With several reward models, `reward_input_ids` (a reward prompt of their own) is a sequence of one per
        model.

        Args:
            fused: `None` (default) decodes with the fused path (one batched forward for base and reward models,
                see `transformers_taro.fused`) wherever it applies (`fused.why_not_fused`), else with the
                processor path. `True` insists on the fused path (an error says why it cannot apply), `False`
                uses the processor path.
        """
        ids = generate_kwargs.get("input_ids")
        if generate_kwargs.get("inputs_embeds") is not None:
            raise ValueError(
                "inputs_embeds cannot be guided: the reward model reads token ids, which embeddings do not give. Pass "
                "input_ids (the tokenized prompt) instead."
            )
        if ids is not None and ids.dim() != 2:
            raise ValueError(
                f"input_ids must be [batch, length], got shape {list(ids.shape)}: for one prompt, pass "
                "ids.unsqueeze(0), or tokenize with return_tensors='pt'."
            )
        if ids is not None and ids.shape[-1] == 0:
            raise ValueError("The prompt is empty (input_ids has no tokens): give every row at least one token.")
        mask = generate_kwargs.get("attention_mask")
        if ids is not None and mask is not None and tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(
                f"attention_mask has shape {list(mask.shape)} and input_ids {list(ids.shape)}: give the mask the "
                "tokenizer returned with these input_ids (one entry per prompt token)."
            )
        self._check_vocabulary(model, generate_kwargs.get("tokenizer"))
        # What generate will use: its own kwargs, else the `generation_config` passed, else the model's.
        config = generate_kwargs.get("generation_config") or model.generation_config
        wants_dict = generate_kwargs.get("return_dict_in_generate", getattr(config, "return_dict_in_generate", False))
        beams = (generate_kwargs.get("num_beams", getattr(config, "num_beams", 1)) or 1) > 1
        if beams:
            # Which beam row each returned token came from, to give the returned sequences their own weights.
            generate_kwargs.update(output_scores=True, return_dict_in_generate=True)
        out, proc, path = self._generate(model, fused, generate_kwargs)
        alphas = proc.alphas_of(out.beam_indices) if beams else proc.alphas
        self._last_call.alphas, self._last_call.path = alphas, path
        if not wants_dict:
            return out.sequences if beams else out
        out["alphas"], out["decoding"] = alphas, path
        return out

    def _generate(
        self, model: PreTrainedModel, fused: bool | None, generate_kwargs: dict[str, Any]
    ) -> tuple[Any, TARoProcessor, str]:
        adapters = [reward.fused for reward in self._rewards.values()]
        reason = None if fused is False else why_not_fused(model, adapters, generate_kwargs)
        if fused and reason:
            raise FusedNotApplicable(f"fused=True, but {reason} Use fused=False (the processor path).")
        pad = generate_kwargs.get("pad_token_id", getattr(model.generation_config, "pad_token_id", None))
        extra = generate_kwargs.pop("logits_processor", None) or []
        reward_prompt = {key: generate_kwargs.pop(key, None) for key in ("reward_input_ids", "reward_attention_mask")}
        if reason is None and fused is not False:
            want_hidden = self.method == "taro" and self.router.config.use_reward_hidden_states
            forward = FusedForward(model, [a.lora for a in adapters], want_hidden=want_hidden, **reward_prompt)
            proc = FusedProcessor(
                model,
                forward,
                attention_mask=generate_kwargs.get("attention_mask"),
                pad_token_id=pad,
                **self._decoding_weight(),
            )
            generate_kwargs[cache_keyword(model)] = FusedCache(config=model.config, blocks=forward.blocks)
            with forward:
                out = model.generate(**generate_kwargs, logits_processor=LogitsProcessorList([proc, *extra]))
            return out, proc, "fused"
        proc = self.processor(
            attention_mask=generate_kwargs.get("attention_mask"),
            pad_token_id=pad,
            tokenizer=generate_kwargs.get("tokenizer"),
            **reward_prompt,
        )
        out = model.generate(**generate_kwargs, logits_processor=LogitsProcessorList([proc, *extra]))
        return out, proc, "processor"

    def _check_vocabulary(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> None:
        """Refuse a base whose vocabulary is not the guide's (`vocabulary.check_vocabulary_sizes`; with the base's
        tokenizer given to `generate`, compared with the guide's token by token): its token ids would index other
        tokens of the reward model, a silent wrong answer."""
        trained, size = self.config.vocab_size, _vocab_size(model)
        if tokenizer is not None and self.tokenizer is not None:
            check_same_vocabulary(tokenizer, self.tokenizer)
        if trained and size:
            try:
                check_vocabulary_sizes(size, trained, tokenizer, self.tokenizer)
            except ValueError as err:
                raise ValueError(
                    f"This guide's reward model has a vocabulary of {trained} tokens, the model it is asked to guide "
                    f"{size}: guided decoding needs one vocabulary ({err}). Use a base with the guide's tokenizer (it "
                    f"was trained next to {self.config.base_model_name_or_path!r}), or train a guide for this base."
                ) from None

    def _decoding_weight(self) -> dict[str, Any]:
        """What decodes: the router (TARo), or the fixed weights (GenARM; a TARo guide's are only its baseline)."""
        return {"router": self.router} if self.method == "taro" else {"alpha": self.config.weights()}

    # -- saving and loading ----------------------------------------------------------------------------------

    def save_pretrained(
        self, save_directory: str | os.PathLike, *, overwrite: bool = False, is_main_process: bool = True
    ) -> None:
        """Write the guide folder: `guide_config.json`, `reward_model/` (or `reward_models/<name>/` for each of
        several), `router/` (TARo), `README.md`.

        Only those entries are written or replaced; whatever else the folder holds stays. A folder with other files
        that is not a guide folder is refused unless `overwrite=True`; a file, or the working directory, always.
        Each entry is replaced in one rename and `guide_config.json` goes last, so a crash never leaves a folder
        that loads a mix of two guides. The guide's own adapter is copied before anything is replaced, so saving a
        guide onto the folder it was loaded from works. Under several processes, pass `is_main_process`
        (accelerate's `state.is_main_process`): the others write nothing.
        """
        if not is_main_process:
            return

        def write(folder: Path) -> None:
            folder.mkdir()
            with quiet_progress():
                self._write(folder)

        write_entries_atomically(save_directory, write, GUIDE_ENTRIES, marker=GUIDE_CONFIG_NAME, overwrite=overwrite)

    def _write(self, folder: Path) -> None:
        for name, reward in self._rewards.items():
            rm_dir = (
                folder / REWARD_MODEL_DIR if self.config.reward_models is None else folder / REWARD_MODELS_DIR / name
            )
            if reward.adapter is not None:
                # The adapter's own files only: a training folder also holds checkpoint-N/ and pickled arguments.
                copy_final_files(reward.adapter, rm_dir)
            else:
                reward.get().save_pretrained(rm_dir)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(rm_dir)
        if self.router is not None:
            self.router.save_pretrained(folder / ROUTER_DIR)
        self.config.save_pretrained(folder)
        (folder / "README.md").write_text(render_card("guide.md", self._card_fields()), encoding="utf-8")

    def _card_fields(self) -> dict[str, Any]:
        return card_fields(
            self.config,
            lora={name: reward.adapter is not None for name, reward in self._rewards.items()},
            router=self.router.config if self.router is not None else None,
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_guide_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: str | dict | None = None,
    ) -> TARoGuide:
        """Load a guide from a local folder, a Hub id, or the offline HF cache (`local_files_only=True`).

        A LoRA reward model is merged into a fresh copy of its base (named in its `adapter_config.json`; the
        embedded default loads offline). `dtype` and `device_map` apply to the reward model.
        """
        folder = _guide_folder(pretrained_guide_name_or_path, revision, token, cache_dir, local_files_only)
        config = TARoGuideConfig.from_file(folder / GUIDE_CONFIG_NAME)
        if config.reward_models is None:
            folders = {SINGLE_NAME: folder / REWARD_MODEL_DIR}
        else:
            folders = {name: folder / REWARD_MODELS_DIR / name for name in config.reward_models}
        router = None
        if config.method == "taro":
            if not (folder / ROUTER_DIR / "config.json").is_file():
                raise FileNotFoundError(f"{folder}: a TARo guide needs {ROUTER_DIR}/config.json, which is missing.")
            with quiet_progress():
                router = TARoRouter.from_pretrained(folder / ROUTER_DIR)
            router.config.check_reward_model_count(list(folders), where=f"{folder}: its {ROUTER_DIR}/")
        models, adapters, tokenizers = {}, {}, {}
        for name, rm_dir in folders.items():
            models[name], adapters[name] = _reward_model_parts(folder, rm_dir, dtype, device_map)
            tokenizers[name] = _saved_tokenizer(rm_dir)
        saved = [(name, t) for name, t in tokenizers.items() if t is not None]
        for name, other in saved[1:]:
            try:
                check_same_vocabulary(saved[0][1], other)
            except ValueError as err:
                raise ValueError(
                    f"{folder}: the reward models {saved[0][0]!r} and {name!r} have different tokenizers, and a "
                    f"guide's reward models share one vocabulary ({err})"
                ) from None
        single = config.reward_models is None
        guide = cls(
            models[SINGLE_NAME] if single else models,
            router=router,
            alpha=config.alpha,
            config=config,
            tokenizer=saved[0][1] if saved else None,
            adapter_folder=adapters[SINGLE_NAME] if single else adapters,
        )
        for reward in guide._rewards.values():
            reward.load_kwargs = {"dtype": dtype, "device_map": device_map}
        guide.name_or_path = str(folder)
        loaded = next((m for m in models.values() if m is not None), None)
        if loaded is not None:
            guide.to(loaded.device)
        return guide

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload TARo guide", **kwargs: Any) -> Any:
        """Upload the guide folder, with its model card from `hub_cards/guide.md`, to the Hub repo `repo_id`.

        Takes `private`, `token`, `revision`, `create_pr` as `huggingface_hub.HfApi.upload_folder` does.
        """
        return push_folder_to_hub(
            lambda folder: self._write(Path(folder)), repo_id, commit_message=commit_message, **kwargs
        )


def card_fields(config: TARoGuideConfig, lora: dict[str, bool], router: TARoRouterConfig | None) -> dict[str, Any]:
    """The values `hub_cards/guide.md` is filled with (`lora`: whether each reward model is a LoRA adapter)."""
    fields = dataclasses.asdict(config)
    kinds = {name: "LoRA adapter" if is_lora else "causal LM" for name, is_lora in lora.items()}
    if config.reward_models is None:
        fields["reward_model_kind"] = next(iter(kinds.values()))
    else:
        fields["reward_model_kind"] = f"{len(kinds)}, in `{REWARD_MODELS_DIR}/`: " + ", ".join(
            f"`{name}` ({kind})" for name, kind in kinds.items()
        )
    if isinstance(config.alpha, dict):
        fields["alpha"] = ", ".join(f"{name} {value:g}" for name, value in config.alpha.items())
    if router is None:
        fields["router"] = "no"
    elif router.mixture == "geometric":
        fields["router"] = "yes: w in [0, 1] per token, (1 - w) log p_base + w log p_reward"
    elif router.num_reward_models > 1:
        fields["router"] = (
            f"yes: one alpha in [0, {router.alpha_max:g}] per reward model and token, "
            "log p_base + sum_k alpha_k log p_reward_k"
        )
    else:
        fields["router"] = f"yes: alpha in [0, {router.alpha_max:g}] per token, log p_base + alpha log p_reward"
    selection = config.alpha_selection or {}
    fields["alpha_selection"] = "\n".join(f"- {key}: {value}" for key, value in selection.items()) or "not recorded"
    fields["evaluation"] = config.evaluation or "Not recorded with this guide."
    return fields


class LazyRewardModel:
    """The reward model, or the LoRA adapter it is merged from on first use; shared by a guide and its `fixed()`.

    The fused path never needs the merged model: it reads the adapter's tensors (`fused`) instead.
    """

    def __init__(self, model: PreTrainedModel | None, adapter: str | os.PathLike | None):
        if adapter is not None and not is_peft_adapter(adapter):
            raise ValueError(f"adapter_folder={str(adapter)!r} holds no adapter_config.json.")
        if adapter is not None:
            _check_adapter(Path(adapter))
        self.model = model
        self.adapter = Path(adapter) if adapter is not None else None
        self.fused = FusedAdapter(adapter) if adapter is not None else None
        self.device: str | torch.device | None = None
        self.load_kwargs: dict[str, Any] = {}
        self._loading = threading.Lock()  # two threads' first processor-path calls merge the adapter once

    @property
    def loaded(self) -> bool:
        """Whether the merged reward model exists (the processor path built it, or it was given)."""
        return self.model is not None

    def get(self) -> PreTrainedModel:
        with self._loading:
            return self._get()

    def _get(self) -> PreTrainedModel:
        if self.model is None:
            # Building a model draws random initial weights: a lazy load inside a seeded `generate` call must not
            # move the caller's random stream, or seeded sampling would depend on whether it was loaded before.
            with torch.random.fork_rng(devices=[]):
                self.model = load_causal_lm(str(self.adapter), **self.load_kwargs)
            if self.device is not None:
                self.to(self.device)
        return self.model

    def to(self, device: str | torch.device) -> None:
        self.device = device
        if self.model is not None and getattr(self.model, "hf_device_map", None) is None:
            self.model.to(device)


def _reward_model_parts(
    folder: Path, rm_dir: Path, dtype: torch.dtype | str | None, device_map: str | dict | None
) -> tuple[PreTrainedModel | None, Path | None]:
    """A saved reward model: the loaded causal LM, or None and its LoRA adapter folder (merged on first use: the
    fused path never needs the merged copy)."""
    if not rm_dir.is_dir():
        raise FileNotFoundError(f"{folder} is a guide folder without {rm_dir.relative_to(folder)}/: it is incomplete.")
    adapter = rm_dir if is_peft_adapter(rm_dir) else None
    if adapter is None and not (rm_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{rm_dir}/ is empty or incomplete: it holds neither a model (config.json) nor a LoRA adapter "
            "(adapter_config.json). Save or download the guide again."
        )
    if adapter is not None:
        return None, adapter
    return load_causal_lm(str(rm_dir), dtype=dtype, device_map=device_map), None


def _check_adapter(adapter: Path) -> None:
    """A saved LoRA adapter must load now, not at the first `generate`: its config names a rank, its weights are
    whole, and the base it names is loadable (a folder that is gone, a relative path from elsewhere, an uncached Hub
    id are named as such)."""
    config_file = adapter / "adapter_config.json"
    config = read_json_object(config_file)
    if config.get("peft_type", "LORA") == "LORA" and not isinstance(config.get("r"), int):
        raise ValueError(
            f"{config_file} has no LoRA rank 'r' (a whole number), so the adapter cannot be read: restore the "
            "adapter_config.json it was saved with (its rank is lora_A's first dimension)."
        )
    check_weight_files(adapter, "the adapter")
    base = config.get("base_model_name_or_path")
    try:
        resolve(base)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{config_file} names its base model base_model_name_or_path={base!r}, which cannot be loaded here: {err} "
            "Point it at the base's folder or Hub id (the model the adapter was trained on)."
        ) from None


def _saved_tokenizer(folder: str | os.PathLike) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved beside a reward model, if any: it only lets `generate(tokenizer=...)` compare vocabularies
    token by token, so a folder (or Hub id) without one is fine."""
    return load_tokenizer(str(folder)) if (Path(folder) / "tokenizer_config.json").is_file() else None


def _vocab_size(model: PreTrainedModel) -> int | None:
    embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(embeddings.weight.shape[0]) if embeddings is not None else None


def _guide_folder(
    name: str | os.PathLike,
    revision: str | None,
    token: str | bool | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool | None,
) -> Path:
    path = Path(name)
    if path.is_dir():
        if not (path / GUIDE_CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{path} is not a TARo guide folder: it has no {GUIDE_CONFIG_NAME}. A guide folder holds "
                f"{GUIDE_CONFIG_NAME}, {REWARD_MODEL_DIR}/ and (TARo) {ROUTER_DIR}/; assemble one with "
                "TARoGuide(reward_model, router=..., alpha=...).save_pretrained(folder)."
            )
        return path
    if not could_be_repo_id(str(name), owner=True):
        raise FileNotFoundError(f"{name}: no such folder (and it is not a Hub id of the form 'owner/name').")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            str(name), revision=revision, token=token, cache_dir=cache_dir, local_files_only=bool(local_files_only)
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise FileNotFoundError(
            f"{name}: not a local folder, and the Hub repo could not be read ({type(err).__name__}). Offline, it "
            "must be in the HF cache already (download it once, or pass a local folder)."
        ) from err
    return _guide_folder(snapshot, revision, token, cache_dir, local_files_only)


def load_guide(
    guide: str | os.PathLike | None = None,
    *,
    reward_model: str | Sequence[str] | None = None,
    router: str | None = None,
    alpha: float | Mapping[str, float] | None = None,
    method: str | None = None,
    **load_kwargs: Any,
) -> TARoGuide | None:
    """The guide a command line asks for: a guide folder or Hub id, or one assembled from its parts.

    - `method="base"`: no guide (None).
    - `reward_model` (a model, LoRA adapter or Hub id; or several `name=path` strings) with `router` and/or
      `alpha`: a guide assembled from them.
    - otherwise the guide `guide` (default: the shipped one), with its router replaced by `router` if given.

    Then `method="genarm"`, or an `alpha` without `method`, gives the fixed-weight guide (`alpha`, else the guide's
    own); `method="genarm:NAME"` the GenARM guide on the reward model NAME alone (`guide.only`); `method="taro"`
    requires a router. `load_kwargs` (`dtype`, `device_map`, ...) go to the reward models.
    """
    from .defaults import DEFAULT_GUIDE

    kind, _, only = (method or "").partition(":")
    if method is not None and (kind not in ("base", *METHODS) or (only and kind != "genarm")):
        raise ValueError(f"Unknown method {method!r}: choose base, genarm, genarm:NAME or taro.")
    if method == "base":
        return None
    if not isinstance(alpha, Mapping):
        check_alpha(alpha)  # before anything loads
    loaded_router = None
    if router is not None:
        with quiet_progress():
            # resolve: a folder, the HF cache, or the Hub, else an error that says which of them failed
            loaded_router = TARoRouter.from_pretrained(resolve(router))
    if reward_model is not None:
        if guide is not None:
            raise ValueError("Give a guide (--guide) or its parts (--reward_model, --router/--alpha), not both.")
        if loaded_router is None and alpha is None:
            raise ValueError("A guide assembled from --reward_model needs --router (TARo) or --alpha (GenARM).")
        specs = named_reward_models(reward_model)
        single = not isinstance(specs, dict)
        paths = {SINGLE_NAME: specs} if single else specs
        check_alphas(alpha, None if single else list(paths))  # before anything loads
        models = {name: load_causal_lm(path, **load_kwargs) for name, path in paths.items()}
        if loaded_router is not None:
            loaded_router.to(next(iter(models.values())).device)
        adapters = {name: path if is_peft_adapter(path) else None for name, path in paths.items()}
        result = TARoGuide(
            models[SINGLE_NAME] if single else models,
            router=loaded_router,
            alpha=alpha,
            tokenizer=_saved_tokenizer(next(iter(paths.values()))),
            adapter_folder=adapters[SINGLE_NAME] if single else adapters,
        )
    else:
        result = TARoGuide.from_pretrained(guide or DEFAULT_GUIDE, **load_kwargs)
        if loaded_router is not None:
            result = result._replace(router=loaded_router, config=dataclasses.replace(result.config, method="taro"))
            loaded_router.config.check_reward_model_count(result.reward_model_names, where=f"The router {router}")
    if only:
        unused = sorted(set(alpha) - {only}) if isinstance(alpha, Mapping) else []
        if unused and only not in alpha:
            raise ValueError(
                f"alpha gives weights for {unused} only, but method 'genarm:{only}' decodes with {only!r} alone: give "
                f"{only}'s weight as {only}=WEIGHT (or none, for the one the guide recorded)."
            )
        if unused:
            logger.warning(
                "method 'genarm:%s' decodes with %r alone: the weights for %s are not used.", only, only, unused
            )
        return result.only(only, alpha.get(only) if isinstance(alpha, Mapping) else alpha)
    if kind == "genarm" or (method is None and alpha is not None):
        return result.fixed(alpha)
    if kind == "taro" and result.router is None:
        raise ValueError("method 'taro' needs a router: this guide has a fixed alpha only (pass --router).")
    return result
