"""`TARoProcessor`: reward-guided decoding as a transformers `LogitsProcessor`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedModel, PreTrainedTokenizerBase

from .guidance import guided_scores
from .mixing import check_alpha
from .router import TARoRouter
from .vocabulary import check_same_vocabulary, check_vocabulary_sizes


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward keyword for the KV cache: transformers 5.24 renamed `past_key_values` to `cache`."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def positions_from_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Position ids of the last `length` tokens: left padding counts no positions, so a padded row sees the
    positions it would see alone."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]


def returned_cache(output: Any) -> Any:
    """The KV cache a forward returned, under either name (reading the old one warns on transformers >= 5.24)."""
    return output["cache"] if "cache" in output else output.past_key_values


class RewardState:
    """The reward models' view of the batch: each one's KV cache and attention mask, and the base ids consumed."""

    def __init__(self, caches: list[Any], masks: list[torch.Tensor | None], seen_ids: torch.Tensor):
        self.caches = caches
        self.masks = masks
        self.seen_ids = seen_ids
        self.alphas: torch.Tensor | None = None  # [rows, steps, K], reordered with the beams
        self.steps: list[torch.Tensor] = []  # each step's weights [rows, K], in that step's row order


def tensor_per_model(value: torch.Tensor | Sequence[torch.Tensor | None] | None, count: int, what: str) -> list:
    """`value` for each of `count` reward models: None for all, a tensor (one model), or one entry per model."""
    if value is None:
        return [None] * count
    if isinstance(value, torch.Tensor):
        if count > 1:
            raise ValueError(f"With {count} reward models, pass {what} as a sequence of one per model (None: none).")
        return [value]
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{len(values)} {what} for {count} reward models: give one per reward model, in their order.")
    return values


class TARoProcessor(LogitsProcessor):
    r"""Token-level reward guidance (GenARM) with fixed weights, or per-token weights from a TARo router.

    At every step, with the base model's next-token scores :math:`s` (what `generate` passes in) and each reward
    model's logits :math:`r_k` on the same prefix, the processor returns

    .. math::
        \text{out} = \log\mathrm{softmax}(s) + \sum_k \alpha_{k,t} \cdot \log\mathrm{softmax}(r_k)

    where :math:`\alpha_{k,t}` is the fixed `alpha` (one per reward model), or the router's weights per row and
    step, from the features of every reward model's distribution against the base's. One reward model is the
    case k = 1 (GenARM, TARo).

    *Temperature.* `generate` applies its warpers (temperature, top-k, top-p) after this processor, so sampling
    at temperature T draws from :math:`\propto p_b^{1/T} p_r^{\alpha/T}`. GenARM writes its target as
    :math:`\propto (p_b \, p_r^{\alpha})^{1/T'}` normalised over the combined exponent :math:`1+\alpha`; to sample
    that distribution at temperature T', pass ``temperature = T' / (1 + alpha)`` (fixed alpha only). Greedy and
    beam search do not depend on T.

    *Reward model state.* Each reward model keeps its own KV cache: the prompt is prefilled once, then it sees
    one new token per step (one forward per reward model and step). Left-padded batches get each reward model's
    attention mask and position ids right, so a row in a padded batch equals that prompt generated alone. Beam
    search (rows expanded and reordered between steps) is detected from `input_ids` and the caches are reordered
    to match. When `input_ids` is not
    the previous step's ids plus one token per row (a new `generate` call, assisted decoding), the state is
    rebuilt from scratch: reusing one processor never leaks the last call's cache.

    Args:
        reward_model (`PreTrainedModel` or a sequence of them):
            Token-level (autoregressive) reward model: a causal LM sharing the base model's vocabulary. Vocabulary
            matrices that differ only by padding rows are fine. Several reward models: a sequence, in the order
            their weights come in.
        router (`TARoRouter`, *optional*): Picks the weights per row and step (as many as there are reward models:
            `router.config.num_reward_models`). Exactly one of `router` / `alpha`.
        alpha (`float`, or a sequence of one float per reward model, *optional*): Fixed guidance weights (GenARM).
        attention_mask (`torch.LongTensor` `[batch, prompt_len]`, *optional*):
            The prompt's attention mask, as passed to `generate`. Required for padded batches.
        reward_input_ids (`torch.LongTensor`, *optional*):
            A separate prompt for the reward model (e.g. its own chat template); the generated tokens are
            appended to it. With several reward models, a sequence of one per model (None: the base's prompt).
        reward_attention_mask (`torch.LongTensor`, *optional*): The mask of `reward_input_ids` (one per model).
        tokenizer (`PreTrainedTokenizerBase`, *optional*): The base's tokenizer.
        reward_tokenizer (`PreTrainedTokenizerBase`, *optional*): The reward model's (one for all, or one per
            model); when both are given, their vocabularies must be identical.
        pad_token_id (`int`, *optional*): Used to detect a padded batch passed without an attention mask (default:
            `tokenizer`'s, else the reward model's generation config's). With neither a mask nor a pad id, a batch
            of several rows is refused: padding could not be told from tokens.
        check_finite (`bool`, defaults to `True`): Raise on NaN/inf reward logits (one host sync per step).

    Example:
    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList
    >>> from transformers_taro import TARoProcessor
    >>> cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2)
    >>> base, rm = LlamaForCausalLM(cfg).eval(), LlamaForCausalLM(cfg).eval()
    >>> ids = torch.tensor([[1, 5, 7, 9]])
    >>> proc = TARoProcessor(rm, alpha=1.0)
    >>> out = base.generate(ids, logits_processor=LogitsProcessorList([proc]), max_new_tokens=5, do_sample=False)
    >>> proc.alphas.shape
    torch.Size([1, 5])
    ```
    """

    def __init__(
        self,
        reward_model: PreTrainedModel | Sequence[PreTrainedModel],
        router: TARoRouter | None = None,
        alpha: float | Sequence[float] | None = None,
        attention_mask: torch.Tensor | None = None,
        reward_input_ids: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        reward_attention_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        reward_tokenizer: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None = None,
        pad_token_id: int | None = None,
        check_finite: bool = True,
    ):
        models = [reward_model] if isinstance(reward_model, torch.nn.Module) else list(reward_model)
        if not models:
            raise ValueError("TARoProcessor needs at least one reward model; got an empty sequence.")
        if (router is None) == (alpha is None):
            raise ValueError(
                "Give exactly one of `router` (TARo: alpha per token) or `alpha` (GenARM: one fixed weight); "
                f"got router={'set' if router is not None else None}, alpha={alpha}."
            )
        k = len(models)
        scalar = alpha is not None and (isinstance(alpha, (str, int, float)) or torch.is_tensor(alpha))
        self._alphas = None if alpha is None else [check_alpha(a) for a in ([alpha] if scalar else list(alpha))]
        if self._alphas is not None and len(self._alphas) != k:
            raise ValueError(
                f"{len(self._alphas)} fixed weight(s) for {k} reward models: give alpha as a sequence of one weight "
                "per reward model, in their order."
            )
        if router is not None:
            router.config.check_reward_model_count(k)
        self._reward_prompts = list(
            zip(
                tensor_per_model(reward_input_ids, k, "reward_input_ids"),
                tensor_per_model(reward_attention_mask, k, "reward_attention_masks"),
            )
        )
        for ids, mask in self._reward_prompts:
            if mask is not None and ids is None:
                raise ValueError("reward_attention_mask was given without reward_input_ids.")
        if reward_tokenizer is None or isinstance(reward_tokenizer, PreTrainedTokenizerBase):
            reward_tokenizers = [reward_tokenizer] * k
        else:
            reward_tokenizers = list(reward_tokenizer)
            if len(reward_tokenizers) != k:
                raise ValueError(f"{len(reward_tokenizers)} reward tokenizers for {k} reward models: one per model.")
        if tokenizer is not None:
            for other in reward_tokenizers:
                if other is not None:
                    check_same_vocabulary(tokenizer, other)
        self.reward_models = models
        self.reward_model = models[0]
        self.router = router
        self.alpha = self._alphas[0] if scalar else self._alphas  # as given: one number, or one per model
        self.attention_mask = attention_mask
        self._tokenizers = [(tokenizer, other) for other in reward_tokenizers]
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = getattr(models[0].generation_config, "pad_token_id", None)
        self.pad_token_id = pad_token_id
        self.check_finite = check_finite
        self._want_hidden = router is not None and router.config.use_reward_hidden_states
        self._keep_logits = ["logits_to_keep" in inspect.signature(m.forward).parameters for m in models]
        self._cache_kw = [cache_keyword(m) for m in models]
        self._base_prompt_len: int | None = None
        self._mask_prompts: torch.Tensor | None = None
        self._state: RewardState | None = None

    @property
    def reward_input_ids(self) -> torch.Tensor | None:
        """The first reward model's own prompt (None: it reads the base's)."""
        return self._reward_prompts[0][0]

    @property
    def num_reward_models(self) -> int:
        return len(self.reward_models)

    @property
    def alphas(self) -> torch.Tensor:
        """`FloatTensor [rows, generated steps]`: the weight used for each row at each step of the last call;
        `[rows, generated steps, K]` with K > 1 reward models.

        With beam search the rows are the beams alive at the last step; [`alphas_of`] gives the weights of the
        returned sequences."""
        if self._state is None or self._state.alphas is None:
            return torch.empty(0, 0) if self.num_reward_models == 1 else torch.empty(0, 0, self.num_reward_models)
        return self._per_model(self._state.alphas)

    def _per_model(self, weights: torch.Tensor) -> torch.Tensor:
        """`[..., K]` weights as the user sees them: without the last axis for one reward model."""
        return weights.squeeze(-1) if self.num_reward_models == 1 else weights

    def reset(self, attention_mask: torch.Tensor | None = None) -> None:
        """Forget the reward model's state; optionally set the attention mask of the next call's prompt."""
        self._state = None
        self._base_prompt_len = None
        self._mask_prompts = None
        if attention_mask is not None:
            self.attention_mask = attention_mask

    # -- reward model state ------------------------------------------------------------------------------------

    def _reward_forward(self, k: int, ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> Any:
        model = self.reward_models[k]
        # `.weight`, not `.num_embeddings`: peft wraps the embedding of an adapter with trainable tokens.
        rows = model.get_input_embeddings().weight.shape[0]
        if ids.numel() and int(ids.max()) >= rows:
            raise ValueError(
                f"Token id {int(ids.max())} is beyond the reward model's vocabulary ({rows} embeddings): the base (or "
                "the prompt) uses tokens the reward model does not have. Use a reward model with the base's "
                "tokenizer."
            )
        device = model.device
        mask = mask.to(device)
        positions = positions_from_mask(mask, ids.shape[1])
        kwargs: dict[str, Any] = {self._cache_kw[k]: cache}
        if self._keep_logits[k]:
            kwargs["logits_to_keep"] = 1
        return model(
            input_ids=ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            output_hidden_states=self._want_hidden,
            **kwargs,
        )

    def _expand(self, tensor: torch.Tensor, rows: int, what: str) -> torch.Tensor:
        if rows % tensor.shape[0]:
            raise ValueError(
                f"{what} has {tensor.shape[0]} rows but generate is decoding {rows}: pass the {what} of this "
                "batch (proc.reset(attention_mask=...) before reusing the processor on another batch)."
            )
        # generate expands prompts with repeat_interleave for num_beams / num_return_sequences; so do we.
        return tensor.repeat_interleave(rows // tensor.shape[0], dim=0)

    def _prompt_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows, length = input_ids.shape
        if self.attention_mask is None:
            self._refuse_unmasked_padding(input_ids)
            return torch.ones_like(input_ids)
        mask = self._expand(self.attention_mask.to(input_ids.device), rows, "attention_mask")
        # The mask belongs to one batch of prompts: using it on another would silently mis-mask padding.
        per_prompt = rows // self.attention_mask.shape[0]
        prompts = input_ids[::per_prompt, : mask.shape[1]]
        if self._mask_prompts is None and mask.shape[1] != length:
            # At the first call input_ids is the prompt (assisted decoding too): the mask must cover it exactly.
            raise ValueError(
                f"attention_mask covers {mask.shape[1]} tokens but the prompt has {length}: pass the mask of the "
                "prompt given to generate."
            )
        if self._mask_prompts is None:
            self._check_mask_fits(input_ids[:, : mask.shape[1]], mask, per_prompt)
            self._mask_prompts = prompts.clone()
        elif self._mask_prompts.shape != prompts.shape or not torch.equal(self._mask_prompts, prompts):
            raise ValueError(
                "This processor's attention_mask belongs to another batch of prompts. Call "
                "proc.reset(attention_mask=enc['attention_mask']) before generating for a new batch."
            )
        # Tokens past the mask were generated (a continuation, or assisted decoding): they are all real tokens.
        return torch.cat([mask, mask.new_ones(rows, length - mask.shape[1])], dim=1)

    def _check_mask_fits(self, ids: torch.Tensor, mask: torch.Tensor, per_prompt: int) -> None:
        """Refuse a mask that cannot be this batch's: what it masks would otherwise be read (or dropped) silently."""
        empty = (mask.sum(dim=1) == 0).nonzero()
        if len(empty):
            raise ValueError(
                f"Row {int(empty[0])} of the batch is an empty prompt (its attention_mask is all 0): "
                "give every row at least one token."
            )
        if self.pad_token_id is not None:
            masked_tokens = (mask == 0) & (ids != self.pad_token_id)
            if bool(masked_tokens.any()):
                row = int(masked_tokens.any(dim=1).nonzero()[0])
                raise ValueError(
                    f"attention_mask hides non-padding tokens of row {row} (tokens other than the pad id "
                    f"{self.pad_token_id}): it is not this batch's mask, or the pad id is not the tokenizer's. Pass "
                    "attention_mask=enc['attention_mask'] from the same tokenizer call as the ids, and "
                    "pad_token_id=tokenizer.pad_token_id."
                )
        if per_prompt > 1:
            # Fewer mask rows than prompts is right only for generate's own expansion (beams, several sequences):
            # each mask row then stands for identical copies of one prompt.
            groups = ids.reshape(-1, per_prompt, ids.shape[1])
            if not bool((groups == groups[:, :1]).all()):
                raise ValueError(
                    f"attention_mask has {mask.shape[0] // per_prompt} rows for {ids.shape[0]} different "
                    "prompts: pass one mask row per prompt (the mask given to generate)."
                )
        if self.pad_token_id is not None:
            # Left padding is a run of pad ids longer than the batch's shortest (pad = BOS models start every row
            # with one): a mask that marks such a position as a token is another batch's.
            leading = ids.eq(self.pad_token_id).long().cumprod(dim=1).sum(dim=1)
            padding = torch.arange(ids.shape[1], device=ids.device)[None, :] < (leading - leading.min())[:, None]
            exposed = padding & (mask != 0)
            if bool(exposed.any()):
                row = int(exposed.any(dim=1).nonzero()[0])
                raise ValueError(
                    f"attention_mask marks padding of row {row} (leading pad ids {self.pad_token_id}) as tokens: it "
                    "is not this batch's mask. Pass attention_mask=enc['attention_mask'] from the same tokenizer call "
                    "as the ids."
                )

    def _refuse_unmasked_padding(self, input_ids: torch.Tensor) -> None:
        if input_ids.shape[0] < 2:
            return
        if self.pad_token_id is None:
            # Without a mask or a pad id nothing tells padding from tokens, and a padded row would silently be
            # read with its padding by the reward model.
            raise ValueError(
                f"A batch of {input_ids.shape[0]} rows with no attention_mask and no pad id (the reward model's "
                "generation config has none): padding cannot be ruled out. Pass attention_mask=enc['attention_mask'] "
                "(the mask given to generate), or pad_token_id=tokenizer.pad_token_id."
            )
        is_pad = input_ids.eq(self.pad_token_id).long()
        leading = is_pad.cumprod(dim=1).sum(dim=1)
        # Models whose pad token is also BOS start every row with one; only differing runs mean left padding.
        if leading.min() != leading.max():
            raise ValueError(
                "The batch is left-padded but TARoProcessor got no attention_mask: pass "
                "attention_mask=enc['attention_mask'] (the mask given to generate) so the reward model skips padding."
            )

    def _prefill(self, input_ids: torch.Tensor) -> list[Any]:
        rows = input_ids.shape[0]
        if self._base_prompt_len is None:
            self._base_prompt_len = input_ids.shape[1] if self.attention_mask is None else self.attention_mask.shape[1]
        base_mask = self._prompt_mask(input_ids)
        outputs, caches, masks = [], [], []
        for k, (reward_ids, reward_mask) in enumerate(self._reward_prompts):
            ids, mask = input_ids, base_mask
            if reward_ids is not None:
                generated = input_ids[:, self._base_prompt_len :]
                r_ids = self._expand(reward_ids.to(input_ids.device), rows, "reward_input_ids")
                r_mask = (
                    torch.ones_like(r_ids)
                    if reward_mask is None
                    else self._expand(reward_mask.to(input_ids.device), rows, "reward_attention_mask")
                )
                ids = torch.cat([r_ids, generated], dim=1)
                mask = torch.cat([r_mask, torch.ones_like(generated)], dim=1)
            out = self._reward_forward(k, ids, mask, cache=None)
            outputs.append(out)
            caches.append(returned_cache(out))
            masks.append(mask)
        self._state = RewardState(caches, masks, input_ids.clone())
        return outputs

    def _beam_order(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """Which old row each new row continues: None if `input_ids` does not extend the last step by one token."""
        state = self._state
        if state is None or input_ids.shape[0] != state.seen_ids.shape[0]:
            return None
        if input_ids.shape[1] != state.seen_ids.shape[1] + 1:
            return None
        prefix = input_ids[:, :-1]
        if torch.equal(prefix, state.seen_ids):
            return torch.arange(input_ids.shape[0], device=input_ids.device)
        match = (prefix.unsqueeze(1) == state.seen_ids.unsqueeze(0)).all(-1)  # [new rows, old rows]
        if not bool(match.any(dim=1).all()):
            return None
        return match.float().argmax(dim=1)

    def _advance(self, input_ids: torch.Tensor, order: torch.Tensor) -> list[Any]:
        """One more token per row: follow the beams' reordering, then each reward model's output for the new token."""
        state = self._state
        if not torch.equal(order, torch.arange(order.numel(), device=order.device)):
            self._reorder_reward_state(order)
            if state.alphas is not None:
                state.alphas = state.alphas[order.to(state.alphas.device)]
        out = self._next_reward_output(input_ids)
        state.seen_ids = input_ids.clone()
        return out

    def _reorder_reward_state(self, order: torch.Tensor) -> None:
        state = self._state
        for k, model in enumerate(self.reward_models):
            state.caches[k].reorder_cache(order.to(model.device))
            state.masks[k] = state.masks[k][order.to(state.masks[k].device)]

    def _next_reward_output(self, input_ids: torch.Tensor) -> list[Any]:
        state = self._state
        outputs = []
        for k in range(self.num_reward_models):
            mask = state.masks[k]
            state.masks[k] = mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = self._reward_forward(k, input_ids[:, -1:], mask, state.caches[k])
            state.caches[k] = returned_cache(out)
            outputs.append(out)
        return outputs

    # -- the LogitsProcessor contract ------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        order = self._beam_order(input_ids)
        outs = self._prefill(input_ids) if order is None else self._advance(input_ids, order)
        if order is None:
            for out, tokenizers in zip(outs, self._tokenizers):
                check_vocabulary_sizes(scores.shape[-1], out.logits.shape[-1], *tokenizers)
        hidden = [out.hidden_states[-1][:, -1].to(scores.device) for out in outs] if self._want_hidden else None
        guided, weights = guided_scores(
            scores,
            [out.logits[:, -1].to(scores.device) for out in outs],
            alpha=self._alphas,
            router=self.router,
            reward_hidden_states=hidden,
            check_finite=self.check_finite,
        )
        state = self._state
        column = weights.unsqueeze(1)
        state.alphas = column if state.alphas is None else torch.cat([state.alphas, column], dim=1)
        state.steps.append(weights)
        return guided

    def alphas_of(self, beam_indices: torch.Tensor) -> torch.Tensor:
        """The weights behind the sequences beam search returned: `[returned rows, steps]` (`[..., K]` with K > 1
        reward models), NaN after a row's end.

        `beam_indices` is `generate(..., output_scores=True, return_dict_in_generate=True).beam_indices`: for each
        returned sequence and step, the row of that step's batch its token came from. (`alphas` follows the
        beams alive at the last step, which need not be the hypotheses returned.) `TARoGuide.generate` does this
        itself, so there `guide.alphas` already belongs to the returned sequences.
        """
        steps = self._state.steps if self._state is not None else []
        if not steps or beam_indices.shape[1] > len(steps):
            raise ValueError(
                f"beam_indices covers {beam_indices.shape[1]} steps, this processor saw {len(steps)}: "
                "pass the beam_indices of the generate call this processor decoded."
            )
        out = torch.full((*beam_indices.shape, steps[0].shape[-1]), float("nan"), device=steps[0].device)
        for t in range(beam_indices.shape[1]):
            rows = beam_indices[:, t].to(steps[t].device)
            valid = rows >= 0
            out[valid, t] = steps[t][rows[valid]].float()
        return self._per_model(out)
