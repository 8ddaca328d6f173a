"""An lm-evaluation-harness model, `taro`: any harness task (GSM8K, MATH-500, ...) with reward guidance.

    taro lm-eval --model taro --model_args method=taro --tasks gsm8k --limit 300 --batch_size 16

`taro lm-eval` is the harness's own command line (every flag is lm-eval's) with this model registered first:
lm-eval 0.4 discovers models only from its own package, so a plain `lm_eval --model taro` cannot see an
external one unless `transformers_taro.evaluation.harness` was imported. From Python, importing this module is
enough: `lm_eval.simple_evaluate(model="taro", model_args="method=genarm,alpha=0.5", tasks=["gsm8k"])`.

`--model_args` (all optional): `pretrained` (base model; default the embedded SmolLM2-135M-Instruct),
`reward_model`, `router`, `method` (`base` | `genarm` | `taro`, default `taro`), `alpha` (GenARM's weight), plus
any `HFLM` argument (`batch_size`, `max_length`, `device`, ...). With the default base, the shipped reward model
and router are used when none is named.

Generation tasks decode with [`TARoProcessor`]; log-likelihood tasks score with the same mixed distribution,
`log_softmax(log p_b + alpha_t * log p_r)`, alpha_t from the router teacher-forced on the request.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessorList

from ..features import guided_scores
from ..generation import make_processor
from .session import Session, load_session


@register_model("taro")
class TARoLM(HFLM):
    """`HFLM` whose next-token distribution is the reward-guided one (see the module docstring)."""

    def __init__(self, pretrained: str | None = None, reward_model: str | None = None, router: str | None = None,
                 method: str = "taro", alpha: float | str | None = None, device_map: str | None = None,
                 **kwargs: Any):
        if kwargs.get("tokenizer") not in (None, "", "None"):
            # The processor and the reward model share the base model's vocabulary; another tokenizer would
            # silently misalign them, so it is refused rather than ignored.
            raise ValueError(f"model 'taro' always uses the base model's tokenizer; remove tokenizer="
                             f"{kwargs['tokenizer']!r} from --model_args (set pretrained= to the model you want).")
        alpha = None if alpha in (None, "", "None") else float(alpha)
        self.session: Session = load_session(pretrained, reward_model, router, method, alpha, device_map)
        kwargs.pop("tokenizer", None)
        super().__init__(pretrained=self.session.base, tokenizer=self.session.tokenizer, **kwargs)

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any):
        s = self.session
        proc = make_processor(s.method, s.reward_model, s.router, s.alpha, generation_kwargs.get("attention_mask"),
                              self.tokenizer.pad_token_id)
        if proc is not None:
            extra = generation_kwargs.pop("logits_processor", None) or []
            generation_kwargs["logits_processor"] = LogitsProcessorList([proc, *extra])
        return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        base_logits = super()._model_call(inps, attn_mask, labels)
        s = self.session
        if s.method == "base":
            return base_logits
        with torch.no_grad():
            want_hidden = s.method == "taro" and s.router.config.use_reward_hidden_states
            out = s.reward_model(inps.to(s.reward_model.device), output_hidden_states=want_hidden)
            base_lp = torch.log_softmax(base_logits.float(), -1)
            reward_lp = torch.log_softmax(out.logits.float().to(base_lp.device), -1)
            if s.method == "taro":
                hidden = out.hidden_states[-1].to(base_lp.device) if want_hidden else None
                alpha = s.router.compute_alpha(base_lp, reward_lp, hidden)
            else:
                alpha = torch.full(base_lp.shape[:-1], float(s.alpha), device=base_lp.device)
            # HFLM log-softmaxes what this returns: the guided scores become the normalised mixed distribution.
            return guided_scores(base_lp, reward_lp, alpha)


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line, with the `taro` model registered (this module's import did that)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
