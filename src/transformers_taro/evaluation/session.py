"""What a command works with: a base model, its tokenizer and a guide (or none), loaded with the shipped defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import SYSTEM_PROMPT
from ..defaults import describe_model, is_default_model
from ..generation import Generation, stop_ids
from ..guide import TARoGuide, load_guide
from ..models import load_causal_lm, load_tokenizer
from ..prompts import format_prompt
from ..visualize import AlphaScale, alpha_html, alpha_legend, alpha_text, model_sections, token_strings


@dataclass
class Session:
    """A base model and the guide it decodes with (`guide=None`: the base alone)."""

    base: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    guide: TARoGuide | None = None
    names: dict[str, Any] = field(default_factory=dict)
    fused: bool | None = None  # guide.generate's choice: None = the fused path where it applies
    generation_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. a repetition guard, for every answer
    system_prompt: str | None = None  # every prompt's system message ("": none); None: see `prompt`

    @property
    def method(self) -> str:
        return "base" if self.guide is None else self.guide.method

    def prompt(self, question: str, system: str | None = None) -> str:
        """`question` in the prompt format: the session's `system_prompt` if set, else a task's own system prompt,
        else the guide's, else the math prompt (so the base alone and a guide without a system prompt are asked
        alike)."""
        if self.system_prompt is not None:
            return format_prompt(question, self.tokenizer, system=self.system_prompt or None)
        guide_system = self.guide.config.system_prompt if self.guide is not None else None
        return format_prompt(question, self.tokenizer, system=system or guide_system or SYSTEM_PROMPT)

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_new_tokens: int = 256, **kwargs: Any) -> list[Generation]:
        """Answer already formatted prompts, as one left-padded batch, greedy unless told otherwise; each answer ends
        at its first end-of-sequence token, and carries the weight used at each of its tokens."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(self.base.device)
        positions = getattr(self.base.config, "n_positions", None)  # learned absolute positions (GPT-2 and kin)
        if positions is not None and enc["input_ids"].shape[1] > positions:
            raise ValueError(
                f"The prompt has {enc['input_ids'].shape[1]} tokens; the model takes {positions} positions at "
                "most. Shorten the prompt, or use a model with a longer context."
            )
        kwargs = {
            "do_sample": False,
            "pad_token_id": self.tokenizer.pad_token_id,
            "max_new_tokens": max_new_tokens,
            **self.generation_kwargs,
            **kwargs,
            "return_dict_in_generate": True,
        }
        if self.guide is not None:
            # The base's tokenizer goes along, so a reward model of another tokenizer is refused, not mixed in.
            kwargs.setdefault("tokenizer", self.tokenizer)
            out = self.guide.generate(self.base, fused=kwargs.pop("fused", self.fused), **enc, **kwargs)
        else:
            out = self.base.generate(**enc, **kwargs)
        stops = stop_ids(self.base, self.tokenizer)
        names = self.guide.reward_model_names if self.guide is not None else []
        results = []
        for row, ids in enumerate(out.sequences[:, enc["input_ids"].shape[1] :].tolist()):
            ids = ids[: next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))]
            alphas = out.alphas[row, : len(ids)].tolist() if self.guide is not None else []
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(Generation(text, ids, alphas, names if len(names) > 1 else None))
        return results

    def stream(self, question: str, max_new_tokens: int = 256, html: str | None = None) -> Generation:
        """Stream the answer token by token, then show it again coloured by alpha."""
        from transformers import TextStreamer

        console = Console()
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result = self.generate([self.prompt(question)], max_new_tokens=max_new_tokens, streamer=streamer)[0]
        if result.alphas:
            tokens = token_strings(self.tokenizer, result.token_ids)
            sections = model_sections(question, tokens, result)
            scale = AlphaScale.fit([alphas for _, _, alphas in sections])
            console.rule(f"guidance weight per token ({self.method})")
            for name, (_, _, alphas) in zip(result.names or [None], sections):
                if name is not None:  # one row per reward model
                    console.print(f"weight of {name}", style="bold")
                console.print(alpha_text(tokens, alphas, scale))
            console.print(alpha_legend(scale))
            if html:
                Path(html).write_text(alpha_html(sections, scale))
                console.print(f"HTML written to {html}")
        return result


def describe_guide(guide: TARoGuide) -> str:
    """The guide's folder or Hub id, or the shipped guide's name for the one that ships in the package."""
    from ..defaults import DEFAULT_GUIDE

    where = guide.name_or_path or "a guide built in code"
    return f"{Path(DEFAULT_GUIDE).name} (shipped)" if where == str(DEFAULT_GUIDE) else where


def load_session(
    base_model: str | None = None,
    guide: str | None = None,
    *,
    reward_model: str | list[str] | None = None,
    router: str | None = None,
    alpha: float | dict[str, float] | None = None,
    method: str | None = None,
    device_map: str | None = None,
    dtype: str | None = None,
    fused: bool | None = None,
    no_repeat_ngram_size: int | None = None,
    system_prompt: str | None = None,
) -> Session:
    """Load a base model and the guide the flags ask for (see `load_guide`); the shipped guide is the default.

    `no_repeat_ngram_size=N` is a repetition guard: no N tokens are generated twice in the same order
    (transformers' own `no_repeat_ngram_size`). The base's scores of a blocked token are -inf before guidance
    mixes anything in, so the guard holds for the guided distribution too. `system_prompt` replaces every prompt's
    system message (`""`: none), so prompt formats can be compared on validation.
    """
    if no_repeat_ngram_size is not None and no_repeat_ngram_size < 1:
        raise ValueError(
            f"--no_repeat_ngram_size must be at least 1 (leave it out for no guard), got {no_repeat_ngram_size}."
        )
    if method != "base" and guide is None and reward_model is None and not is_default_model(base_model):
        raise ValueError(
            f"The shipped guide is made for the embedded SmolLM2-135M-Instruct, not {base_model!r}: name a guide "
            "(--guide) or a reward model (--reward_model with --router or --alpha) made for your base's vocabulary."
        )
    loaded = load_guide(
        guide, reward_model=reward_model, router=router, alpha=alpha, method=method, device_map=device_map, dtype=dtype
    )
    tokenizer = load_tokenizer(base_model)
    base = load_causal_lm(base_model, device_map=device_map, dtype=dtype)
    if loaded is not None and device_map is None:
        loaded.to(base.device)
    names = {
        "base_model": describe_model(base_model),
        "guide": None if reward_model or loaded is None else guide or describe_guide(loaded),
        "reward_model": reward_model,
        "router": router,
        "alpha": loaded.alpha if loaded is not None and loaded.method == "genarm" else None,
        # `genarm:a` and `genarm:b` are both "genarm" at the same weight: what decodes is part of a run's settings.
        "method_option": method,
        "reward_models_used": None if loaded is None else loaded.reward_model_names,
    }
    if system_prompt is not None:
        names["system_prompt"] = system_prompt
    guard = {"no_repeat_ngram_size": no_repeat_ngram_size} if no_repeat_ngram_size else {}
    return Session(base, tokenizer, loaded, names, fused=fused, generation_kwargs=guard, system_prompt=system_prompt)
