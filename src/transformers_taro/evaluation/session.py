"""Loaded models for a command: base, tokenizer, reward model and router, with the shipped defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..data import SYSTEM_PROMPT, format_prompt
from ..generation import Generation, check_method, guided_generate
from ..models import _DEFAULT_ALIASES, load_causal_lm, load_tokenizer
from ..router import TARoRouter
from ..visualize import alpha_html, alpha_text, token_strings

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "smollm2-135m-gsm8k"
DEFAULT_REWARD_MODEL = PRETRAINED / "reward_model"
DEFAULT_ROUTER = PRETRAINED / "router"
# GenARM's weight for the shipped reward model when --alpha is not given; see guide.json for how it was chosen.
_GUIDE_INFO = PRETRAINED / "guide.json"


def default_alpha() -> float:
    if _GUIDE_INFO.is_file():
        return float(json.loads(_GUIDE_INFO.read_text())["best_alpha"])
    return 0.5


def _shipped(path: Path, what: str) -> str:
    if not path.is_dir():
        raise FileNotFoundError(
            f"The shipped default {what} is missing at {path}. Train it with examples/smollm2/train_default.sh, "
            f"or name one with --{what.replace(' ', '-')}."
        )
    return str(path)


@dataclass
class Session:
    base: Any
    tokenizer: Any
    method: str
    reward_model: Any = None
    router: TARoRouter | None = None
    alpha: float | None = None
    names: dict[str, str | None] | None = None

    @property
    def alpha_max(self) -> float:
        return self.router.config.alpha_max if self.router is not None else max(self.alpha or 1.0, 1e-6)

    def prompt(self, question: str, system: str | None = None) -> str:
        return format_prompt(question, self.tokenizer, system=system or SYSTEM_PROMPT)

    def generate(self, prompts: list[str], method: str | None = None, **kwargs: Any) -> list[Generation]:
        return guided_generate(self.base, self.tokenizer, prompts, method or self.method, self.reward_model,
                               self.router, self.alpha, **kwargs)

    def stream(self, question: str, max_new_tokens: int = 256, html: str | None = None) -> Generation:
        """Stream the answer token by token, then show it again coloured by alpha."""
        from transformers import TextStreamer

        console = Console()
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result = self.generate([self.prompt(question)], max_new_tokens=max_new_tokens, streamer=streamer)[0]
        if result.alphas:
            tokens = token_strings(self.tokenizer, result.token_ids)
            console.rule(f"guidance weight per token ({self.method}; darker = larger alpha, max {self.alpha_max:g})")
            console.print(alpha_text(tokens, result.alphas, self.alpha_max))
            if html:
                Path(html).write_text(alpha_html([(question, tokens, result.alphas)], self.alpha_max))
                console.print(f"HTML written to {html}")
        return result


def load_session(base_model: str | None, reward_model: str | None, router: str | None, method: str,
                 alpha: float | None, device_map: str | None = None) -> Session:
    """Load what `method` needs. With the default base, the shipped reward model and router are the defaults."""
    default_base = base_model in _DEFAULT_ALIASES
    if method != "base" and reward_model is None:
        if not default_base:
            raise ValueError("A non-default --base-model needs --reward-model (the shipped one is for SmolLM2).")
        reward_model = _shipped(DEFAULT_REWARD_MODEL, "reward model")
    if method == "taro" and router is None:
        router = _shipped(DEFAULT_ROUTER, "router")
    if method == "genarm" and alpha is None:
        alpha = default_alpha()
    tokenizer = load_tokenizer(base_model)
    base = load_causal_lm(base_model, device_map=device_map)
    rm = load_causal_lm(reward_model, device_map=device_map) if method != "base" else None
    r = TARoRouter.from_pretrained(router).to(base.device) if method == "taro" else None
    check_method(method, rm, r, alpha)
    return Session(base, tokenizer, method, rm, r, alpha,
                   names={"base_model": base_model, "reward_model": reward_model, "router": router})
