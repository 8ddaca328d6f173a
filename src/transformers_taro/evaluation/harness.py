"""An lm-evaluation-harness model, `taro`: any harness task (GSM8K, MATH-500, ...) with reward guidance.

    taro lm-eval --model taro --model_args method=taro --tasks gsm8k --limit 300 --batch_size 16

`taro lm-eval` is the harness's own command line (every flag is lm-eval's) with this model registered first:
lm-eval 0.4 discovers models only from its own package, so a plain `lm_eval --model taro` cannot see an
external one unless `transformers_taro.evaluation.harness` was imported. From Python, importing this module is
enough: `lm_eval.simple_evaluate(model="taro", model_args="method=genarm,alpha=0.5", tasks=["gsm8k"])`.

`--model_args` (all optional): `pretrained` (base model; default the embedded SmolLM2-135M-Instruct), `guide`
(a guide folder or Hub id; default the shipped one), or its parts `reward_model` with `router` / `alpha`,
`method` (`base` | `genarm` | `taro`; default: the guide's), `alpha` (GenARM's weight), plus any `HFLM` argument
(`batch_size`, `max_length`, `device`, ...).

Generation tasks decode with `guide.generate` (the fused path when it applies, else `TARoProcessor`);
log-likelihood tasks score with the same mixed distribution, `log_softmax(log p_b + sum_k alpha_k,t * log p_r_k)` from
`guidance.guided_scores`, alpha_t from the router teacher-forced on the request.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from ..extras import require

require("lm_eval")  # a missing [lm-eval] extra is named, not a bare ModuleNotFoundError
from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from ..guidance import guided_scores  # noqa: E402
from .session import Session, load_session  # noqa: E402


@register_model("taro")
class TARoLM(HFLM):
    """`HFLM` whose next-token distribution is the reward-guided one (see the module docstring)."""

    def __init__(
        self,
        pretrained: str | None = None,
        guide: str | None = None,
        reward_model: str | None = None,
        router: str | None = None,
        method: str | None = None,
        alpha: float | str | None = None,
        device_map: str | None = None,
        **kwargs: Any,
    ):
        if kwargs.get("tokenizer") not in (None, "", "None"):
            # The processor and the reward model share the base model's vocabulary; another tokenizer would
            # silently misalign them, so it is refused rather than ignored.
            raise ValueError(
                f"model 'taro' always uses the base model's tokenizer; remove tokenizer="
                f"{kwargs['tokenizer']!r} from --model_args (set pretrained= to the model you want)."
            )
        alpha = None if alpha in (None, "", "None") else float(alpha)
        self.session: Session = load_session(
            pretrained,
            guide,
            reward_model=reward_model,
            router=router,
            alpha=alpha,
            method=method,
            device_map=device_map,
        )
        kwargs.pop("tokenizer", None)
        super().__init__(pretrained=self.session.base, tokenizer=self.session.tokenizer, **kwargs)

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any):
        guide = self.session.guide
        if guide is None:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        # HFLM calls `self.model.generate(...)`: for that one call, the model's generate is the guide's, which
        # takes the fused path when it applies and the processor path otherwise.
        model = self._model
        self._model = _GuidedGenerate(model, guide)
        try:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        finally:
            self._model = model

    def _model_call(
        self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        base_logits = super()._model_call(inps, attn_mask, labels)
        guide = self.session.guide
        if guide is None:
            return base_logits
        router = guide.router if guide.method == "taro" else None
        want_hidden = router is not None and router.config.use_reward_hidden_states
        with torch.no_grad():
            outs = [rm(inps.to(rm.device), output_hidden_states=want_hidden) for rm in guide.reward_models.values()]
            logits = [out.logits.to(base_logits.device) for out in outs]
            hidden = [out.hidden_states[-1].to(base_logits.device) for out in outs] if want_hidden else None
            single = len(outs) == 1  # one reward model: tensors, as `guided_scores` takes them for one
            # HFLM log-softmaxes what this returns: the guided scores become the normalised mixed distribution.
            scores, _ = guided_scores(
                base_logits,
                logits[0] if single else logits,
                router=router,
                alpha=None if router is not None else guide.config.weights(),
                reward_hidden_states=hidden[0] if single and hidden else hidden,
            )
            return scores


class _GuidedGenerate:
    """The base model, except that `generate` is `guide.generate(model, ...)`."""

    def __init__(self, model: Any, guide: Any):
        self._wrapped, self._guide = model, guide

    def generate(self, **kwargs: Any) -> torch.Tensor:
        return self._guide.generate(self._wrapped, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line, with the `taro` model registered (this module's import did that)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
