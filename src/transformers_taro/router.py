"""`TARoRouterConfig` and `TARoRouter`: a small learned module that picks the guidance weight per token."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from .cards import push_folder_to_hub, render_card
from .features import num_features, router_features
from .files import read_json_object, safetensors_shapes
from .mixing import MIXTURES, as_list
from .vocabulary import MAX_PADDING_ROWS


class TARoRouterConfig(PretrainedConfig):
    r"""Configuration of a [`TARoRouter`].

    Args:
        num_top_logprobs (`int`, defaults to 4):
            How many of the largest log-probs of each model enter the features. (Not called `top_k`: transformers
            treats that name as a generation parameter.)
        use_reward_hidden_states (`bool`, defaults to `False`):
            Also feed the reward model's last hidden state at each position.
        reward_hidden_size (`int`, *optional*):
            Width of that hidden state; required when `use_reward_hidden_states` is set.
        router_hidden_size (`int`, defaults to 64): Width of the MLP.
        router_layers (`int`, defaults to 2): Number of hidden layers of the MLP.
        alpha_max (`float`, defaults to 4.0): The router outputs alpha in `[0, alpha_max]` (product mixture).
        alpha_init (`float`, defaults to 1.0): Alpha of the freshly initialised router on every token. A geometric
            router starts at the weight that decodes greedily alike, `w = alpha_init / (1 + alpha_init)`.
        mixture (`str`, defaults to `"product"`): How the per-token weight mixes the two models
            ([`~transformers_taro.mixing.mix`]). `"product"`: `log p_b + alpha * log p_r`, alpha in
            `[0, alpha_max]`. `"geometric"`: `(1 - w) * log p_b + w * log p_r`, w in `[0, 1]`. Recorded, so a
            saved router decodes with the mixture it was trained with.
        vocab_size (`int`, *optional*):
            The (shared) vocabulary size the router was trained with. A mismatch at use time is an error.
        num_reward_models (`int`, defaults to 1): How many reward models the router weighs: it reads the features of
            each against the base and outputs one weight per model and token (product mixture only when > 1). A
            guide with another number of reward models refuses it.
        weight_grid (`list[float]`, *optional*): Make the router a classifier over weight bins (product mixture).
            Its head scores every point of the grid `weight_grid`^K (each reward model at each listed weight), and
            the weight it decodes with is the expected point under `softmax(scores / grid_temperature)`. This is
            the router the oracle objective trains (`RouterTrainingConfig.oracle_weight`) toward the weights that
            solved each training problem. Without it (the default), the head is one sigmoid per reward model.
        grid_temperature (`float`, defaults to 1.0): The softmax temperature of a grid router's decoding. Below 1
            it moves the weight toward the single most likely grid point (0 would be the argmax), where a
            cross-entropy-trained router spreads its mass over every point that solved problems like this one.
        reward_model_name_or_path (`str`, *optional*): The reward model the router was trained with (with several:
            their names and paths).
        base_model_name_or_path (`str`, *optional*): The base model it was trained with (informational).
        training_summary (`str`, *optional*): How it was trained (data, steps, final loss), for the model card.
    """

    model_type = "taro_router"

    def __init__(
        self,
        num_top_logprobs: int = 4,
        use_reward_hidden_states: bool = False,
        reward_hidden_size: int | None = None,
        router_hidden_size: int = 64,
        router_layers: int = 2,
        alpha_max: float = 4.0,
        alpha_init: float = 1.0,
        mixture: str = "product",
        vocab_size: int | None = None,
        num_reward_models: int = 1,
        weight_grid: list[float] | None = None,
        grid_temperature: float = 1.0,
        reward_model_name_or_path: str | None = None,
        base_model_name_or_path: str | None = None,
        training_summary: str | None = None,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        if mixture not in MIXTURES:
            raise ValueError(f"mixture={mixture!r}: choose one of {MIXTURES}.")
        if alpha_init <= 0.0 or (mixture == "product" and alpha_init >= alpha_max):
            raise ValueError(f"alpha_init must lie strictly inside (0, alpha_max={alpha_max}); got {alpha_init}.")
        if not isinstance(num_reward_models, int) or isinstance(num_reward_models, bool) or num_reward_models < 1:
            raise ValueError(f"num_reward_models must be a whole number >= 1, got {num_reward_models!r}.")
        if mixture == "geometric" and num_reward_models > 1:
            raise ValueError(
                f"The geometric mixture is defined for one reward model, not {num_reward_models}: use "
                "mixture='product'."
            )
        if weight_grid is not None:
            weight_grid = check_weight_grid(weight_grid, alpha_max, mixture)
        if isinstance(grid_temperature, bool) or not isinstance(grid_temperature, (int, float)):
            raise ValueError(f"grid_temperature must be a number > 0, got {grid_temperature!r}.")
        if not (math.isfinite(grid_temperature) and grid_temperature > 0):
            raise ValueError(f"grid_temperature must be a finite number > 0, got {grid_temperature!r}.")
        if use_reward_hidden_states and not reward_hidden_size:
            raise ValueError("use_reward_hidden_states=True needs reward_hidden_size (the reward model's hidden_size).")
        self.num_top_logprobs = num_top_logprobs
        self.use_reward_hidden_states = use_reward_hidden_states
        self.reward_hidden_size = reward_hidden_size
        self.router_hidden_size = router_hidden_size
        self.router_layers = router_layers
        self.alpha_max = alpha_max
        self.alpha_init = alpha_init
        self.mixture = mixture
        self.vocab_size = vocab_size
        self.num_reward_models = num_reward_models
        self.weight_grid = weight_grid
        self.grid_temperature = float(grid_temperature)
        self.reward_model_name_or_path = reward_model_name_or_path
        self.base_model_name_or_path = base_model_name_or_path
        self.training_summary = training_summary
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    def check_reward_model_count(self, given: int | Sequence[str], where: str = "The router") -> None:
        """The one rule for how many reward models a router serves: as many as it was trained for
        (`num_reward_models`), in the same order. `given` is a count or the reward models' names; `where` names the
        router in the error."""
        names = None if isinstance(given, int) else list(given)
        count = given if names is None else len(names)
        if count != self.num_reward_models:
            listed = f" ({', '.join(names)})" if names else ""
            raise ValueError(
                f"{where} was trained for {self.num_reward_models} reward model(s), and {count} are given{listed}: "
                "use a router trained with as many reward models, in the same order."
            )

    @property
    def weight_max(self) -> float:
        """The largest weight the router outputs: `alpha_max` (product) or 1 (geometric)."""
        return 1.0 if self.mixture == "geometric" else self.alpha_max

    def weight_of(self, alpha: float) -> float:
        """The router output that decodes (greedily) like `alpha`: alpha itself, or `w = alpha / (1 + alpha)`."""
        return alpha / (1 + alpha) if self.mixture == "geometric" else alpha

    @property
    def weight_init(self) -> float:
        """The untrained router's weight on every token."""
        return self.weight_of(self.alpha_init)

    @property
    def grid_points(self) -> torch.Tensor | None:
        """`[G, K]`: every combination of the grid's weights over the K reward models (None without a grid), in the
        order of the head's outputs: the first reward model's weight varies slowest."""
        return None if self.weight_grid is None else grid_points(self.weight_grid, self.num_reward_models)

    @property
    def num_outputs(self) -> int:
        """Width of the router's head: one logit per reward model, or one per grid point."""
        return self.num_reward_models if self.weight_grid is None else len(self.weight_grid) ** self.num_reward_models

    @property
    def num_features(self) -> int:
        hidden = self.reward_hidden_size if self.use_reward_hidden_states else None
        return num_features(self.num_top_logprobs, hidden, self.num_reward_models)


@dataclass
class TARoRouterOutput(ModelOutput):
    """Output of [`TARoRouter.forward`].

    Args:
        alpha: The guidance weight per position, shape `[...]` (the leading shape of the inputs; `[..., K]` for a
            sequence of K reward models): alpha for a product router, w for a geometric one.
        grid_logits: For a router with a `weight_grid`, its score of every grid point, `[..., G]`; else None.
    """

    alpha: torch.Tensor | None = None
    grid_logits: torch.Tensor | None = None


class TARoRouter(PreTrainedModel):
    r"""Maps the next-token distributions to a guidance weight alpha in `[0, alpha_max]` per reward model.

    `alpha = alpha_max * sigmoid(MLP(router_features(log p_base, log p_reward[, h_reward])))`. The features are
    those of [`~transformers_taro.features.router_features`], the same function at training and decoding time.
    With `num_reward_models = K` the features of every reward model enter one MLP whose head gives K weights: which
    specialist to follow is decided per token, from the distributions alone (no domain label).

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro import TARoRouter, TARoRouterConfig
    >>> router = TARoRouter(TARoRouterConfig(vocab_size=100))
    >>> lb, lr = torch.randn(3, 100).log_softmax(-1), torch.randn(3, 100).log_softmax(-1)
    >>> router.compute_alpha(lb, lr).shape
    torch.Size([3])
    >>> router.save_pretrained("my-router")  # config.json + model.safetensors + README.md
    >>> TARoRouter.from_pretrained("my-router")  # or a Hub id  # doctest: +ELLIPSIS
    TARoRouter(...)
    ```
    """

    config_class = TARoRouterConfig
    base_model_prefix = "router"
    main_input_name = "base_logprobs"
    _no_split_modules: list[str] = []

    def __init__(self, config: TARoRouterConfig):
        super().__init__(config)
        layers: list[nn.Module] = []
        width = config.num_features
        for _ in range(config.router_layers):
            layers += [nn.Linear(width, config.router_hidden_size), nn.GELU()]
            width = config.router_hidden_size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.num_outputs)
        # A hidden state has its own scale per backbone; normalising it keeps the MLP input at order one.
        self.hidden_norm = nn.LayerNorm(config.reward_hidden_size) if config.use_reward_hidden_states else None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, self.config.initializer_range)
            module.bias.zero_()
            if module is self.head and self.config.weight_grid is None:
                # Start at alpha_init everywhere: the fixed-alpha (GenARM) baseline the router must improve on.
                p = self.config.weight_init / self.config.weight_max
                module.bias.fill_(math.log(p / (1 - p)))
            elif module is self.head:
                # Most of the mass on the grid point nearest alpha_init for every reward model: near GenARM's start.
                points = self.config.grid_points
                nearest = int((points - self.config.alpha_init).abs().sum(-1).argmin())
                module.bias[nearest] = math.log(_GRID_INIT_MASS * (len(points) - 1) / (1 - _GRID_INIT_MASS))
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()

    def check_inputs(
        self,
        base_vocab: int,
        reward_vocab: int | Sequence[int],
        reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None,
    ) -> None:
        """Raise a clear error when the inputs are not what this router was trained on.

        As many reward models as the router weighs (`config.num_reward_models`). Each model's vocabulary must be
        the router's, or it plus padding rows (embedding matrices are often rounded up): checking only the shared
        part would let a router trained on 301 tokens guide models of 49152.
        """
        reward_vocabs = [reward_vocab] if isinstance(reward_vocab, int) else list(reward_vocab)
        self.config.check_reward_model_count(len(reward_vocabs))
        trained = self.config.vocab_size
        sizes = [("base", base_vocab)] + [("reward", size) for size in reward_vocabs]
        for what, size in sizes:
            if trained is not None and not trained <= size <= trained + MAX_PADDING_ROWS:
                raise ValueError(
                    f"This router was trained on a vocabulary of {trained} tokens, but the {what} model's has {size}. "
                    f"Use a reward model (and base) with the router's vocabulary (trained with "
                    f"{self.config.reward_model_name_or_path!r}), or train a router for this one."
                )
        if trained is not None and min(size for _, size in sizes) != trained:
            raise ValueError(
                f"This router was trained on {trained} shared tokens; these models share "
                f"{min(size for _, size in sizes)}."
            )
        if self.config.use_reward_hidden_states:
            if reward_hidden_states is None:
                raise ValueError("This router reads the reward model's hidden states; pass reward_hidden_states.")
            widths = {int(h.shape[-1]) for h in as_list(reward_hidden_states)}
            if widths != {self.config.reward_hidden_size}:
                raise ValueError(
                    f"This router expects reward hidden states of width {self.config.reward_hidden_size}, got "
                    f"{sorted(widths)}: it was trained with another reward model."
                )

    def compute_alpha(
        self,
        base_logprobs: torch.Tensor,
        reward_logprobs: torch.Tensor | Sequence[torch.Tensor],
        reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
        logit_hook: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The weight for each position: inputs `[..., V]` log-probs (and `[..., H]` hidden states), output `[...]`;
        with a sequence of K reward models' log-probs (and hidden states), output `[..., K]`.

        Alpha in `[0, alpha_max]` for a product router, w in `[0, 1]` for a geometric one (`config.mixture`).
        `logit_hook(logit, features, reward_hidden_states)`, if given, replaces the weight's logit before its
        sigmoid (the outcome objective's exploring policy draws around it; not for grid routers)."""
        rewards = as_list(reward_logprobs)
        self.check_inputs(base_logprobs.shape[-1], [r.shape[-1] for r in rewards], reward_hidden_states)
        features = router_features(base_logprobs, reward_logprobs, self.config.num_top_logprobs)
        if self.config.weight_grid is not None:
            return per_model(self.expected_weight(self.grid_logits(features, reward_hidden_states)), reward_logprobs)
        logit = self.weight_logit(features, reward_hidden_states)
        if logit_hook is not None:
            logit = logit_hook(logit, features, reward_hidden_states)
        return per_model(self.config.weight_max * torch.sigmoid(logit), reward_logprobs)

    def expected_weight(self, grid_logits: torch.Tensor) -> torch.Tensor:
        """A grid router's weights from its scores `[..., G]`: the expected grid point under the softmax of the
        scores at `config.grid_temperature`, `[...]` for one reward model and `[..., K]` for K."""
        points = self.config.grid_points.to(grid_logits.device)
        weight = torch.softmax(grid_logits.float() / self.config.grid_temperature, -1) @ points
        return weight.squeeze(-1) if self.config.num_reward_models == 1 else weight

    def grid_logits(
        self, features: torch.Tensor, reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """A grid router's score of every grid point, `[..., G]` (see `weight_logit` for the inputs)."""
        if self.config.weight_grid is None:
            raise ValueError("grid_logits() is for routers with a weight_grid; this one has a sigmoid head.")
        return self._head_output(features, reward_hidden_states)

    def weight_logit(
        self, features: torch.Tensor, reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The weight before its sigmoid from `router_features(...)` of the distributions `[..., F]` (without
        hidden states) and, for routers that read them, the raw reward hidden states (`[..., H]`, or `[..., K, H]`
        or a sequence of K `[..., H]` for K reward models). `[...]` for a router of one reward model, `[..., K]`
        for one of K.

        `compute_alpha` is `weight_max * sigmoid(weight_logit(...))`; the outcome objective treats this logit as
        the mean of the router's policy (see `transformers_taro.training.outcome`)."""
        if self.config.weight_grid is not None:
            raise ValueError(
                "This router chooses among weight bins (weight_grid): it has no weight logit. The outcome objective "
                "needs a router without weight_grid."
            )
        logit = self._head_output(features, reward_hidden_states)
        return logit.squeeze(-1) if self.config.num_reward_models == 1 else logit

    def _head_output(
        self, features: torch.Tensor, reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None
    ) -> torch.Tensor:
        parts = [features]
        if self.hidden_norm is not None:
            hidden = reward_hidden_states
            if not isinstance(hidden, torch.Tensor):
                hidden = torch.stack(list(hidden), dim=-2)
            # A hidden state has its own scale per backbone: normalised here, with the router's own parameters.
            normed = self.hidden_norm(hidden.to(self.hidden_norm.weight.dtype)).float()
            parts.append(normed.flatten(-2) if normed.shape[:-1] != features.shape[:-1] else normed)
        feats = torch.cat(parts, dim=-1) if len(parts) > 1 else features
        return self.head(self.mlp(feats.to(self.head.weight.device, self.head.weight.dtype)))

    def forward(
        self,
        base_logprobs: torch.Tensor,
        reward_logprobs: torch.Tensor,
        reward_hidden_states: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TARoRouterOutput:
        r"""The weight per position; the router computes weights only, and `mixing.mix` applies them.

        Args:
            base_logprobs: `[..., V]` log-probs of the frozen base model (logits are accepted too: they are
                log-softmaxed).
            reward_logprobs: `[..., V]` log-probs (or logits) of the frozen reward model on the same prefixes; a
                sequence of them for a router of several reward models.
            reward_hidden_states: `[..., H]` (one per reward model), only for routers with
                `use_reward_hidden_states`.
        """
        rewards = [torch.log_softmax(r.float(), -1) for r in as_list(reward_logprobs)]
        given = rewards[0] if isinstance(reward_logprobs, torch.Tensor) else rewards
        base = torch.log_softmax(base_logprobs.float(), -1)
        if self.config.weight_grid is None:
            return TARoRouterOutput(alpha=self.compute_alpha(base, given, reward_hidden_states))
        self.check_inputs(base.shape[-1], [r.shape[-1] for r in rewards], reward_hidden_states)
        logits = self.grid_logits(router_features(base, given, self.config.num_top_logprobs), reward_hidden_states)
        return TARoRouterOutput(alpha=per_model(self.expected_weight(logits), given), grid_logits=logits)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> TARoRouter:
        """Load from a local folder or a Hub id (offline too, from the HF cache with `local_files_only=True`).

        A folder that is not a saved router (no `config.json`, another model type, missing or corrupt weights)
        is a clear error, not a freshly initialised router.
        """
        from safetensors import SafetensorError

        from .models import could_be_repo_id

        folder = Path(pretrained_model_name_or_path)
        if folder.is_dir():
            _check_router_folder(folder)
        elif not could_be_repo_id(str(folder)):
            raise FileNotFoundError(f"{folder}: no such folder (and not a Hub id, which has the form 'owner/name').")
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:
            raise ValueError(
                f"{pretrained_model_name_or_path}: model.safetensors is corrupt or truncated ({err}). "
                "Save or download the router again."
            ) from err
        # Weights come memory-mapped from safetensors at arbitrary alignment, which sends CPU BLAS down another
        # kernel and changes the last bit of alpha. The router is tiny: own aligned copies, outputs stay bitwise.
        with torch.no_grad():
            for param in model.parameters():
                param.data = param.data.clone()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Write `config.json`, `model.safetensors` and a model card (`README.md`) from `hub_cards/router.md`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        card = render_card("router.md", self.config.to_dict())
        with open(os.path.join(save_directory, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload TARo router", **kwargs: Any) -> Any:
        """Upload config, weights and the model card from `hub_cards/router.md` to the Hub repo `repo_id`.

        Takes `private`, `token`, `revision`, `create_pr` as `huggingface_hub.HfApi.upload_folder` does.
        """
        return push_folder_to_hub(self.save_pretrained, repo_id, commit_message=commit_message, **kwargs)


_GRID_INIT_MASS = 0.98
"""A fresh grid router's probability on the grid point nearest `alpha_init`."""


def grid_points(grid: Sequence[float], num_reward_models: int) -> torch.Tensor:
    """`[len(grid) ** K, K]`: every combination of `grid`'s weights over K reward models, the first one's slowest."""
    values = torch.tensor(list(grid), dtype=torch.float32)
    return torch.cartesian_prod(*[values] * num_reward_models).view(-1, num_reward_models)


def check_weight_grid(grid: Any, alpha_max: float, mixture: str) -> list[float]:
    """The weight grid as sorted floats, or a `ValueError` that says what to pass."""
    if mixture != "product":
        raise ValueError(f"weight_grid is for the product mixture, not {mixture!r}: use mixture='product'.")
    values = list(grid) if isinstance(grid, (list, tuple)) else None
    if values is None or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ValueError(f"weight_grid must be a list of numbers, e.g. [0, 0.5, 1, 2, 4]; got {grid!r}.")
    values = sorted(float(v) for v in values)
    if len(set(values)) < 2 or len(set(values)) != len(values):
        raise ValueError(f"weight_grid needs at least two distinct weights, each listed once; got {grid!r}.")
    if values[0] < 0 or values[-1] > alpha_max or not all(math.isfinite(v) for v in values):
        raise ValueError(f"weight_grid's weights must lie in [0, alpha_max={alpha_max:g}]; got {grid!r}.")
    return values


def per_model(weight: torch.Tensor, reward_logprobs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """A router's weights in the shape its inputs ask for: `[...]` for one reward model's tensor, `[..., K]` for a
    sequence of K (a router of one model given a one-element sequence gets its weight a trailing axis)."""
    if isinstance(reward_logprobs, torch.Tensor) or len(reward_logprobs) > 1:
        return weight
    return weight.unsqueeze(-1)


def _check_router_folder(folder: Path) -> None:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: it is not a saved TARo router (a router folder holds "
            "config.json and model.safetensors, as TARoRouter.save_pretrained writes them)."
        )
    model_type = read_json_object(config_file).get("model_type")
    if model_type != TARoRouterConfig.model_type:
        raise ValueError(
            f"{folder} holds a {model_type!r} model, not a TARo router (model_type "
            f"{TARoRouterConfig.model_type!r}): was a reward or base model folder given as the router?"
        )
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has a router config but no model.safetensors: the router is incomplete.")
    saved = safetensors_shapes(weights, "the router")
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        skeleton = TARoRouter(TARoRouterConfig.from_pretrained(folder))
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    wrong = [
        f"{k}: config.json implies {expected[k]}, the weights are {saved.get(k, 'missing')}"
        for k in expected
        if saved.get(k) != expected[k]
    ]
    wrong += [f"{k}: in the weights, not in the model config.json describes" for k in saved if k not in expected]
    if wrong:
        raise ValueError(
            f"{folder}: config.json does not match model.safetensors ({'; '.join(wrong[:3])}). The "
            "config was edited or belongs to another router: restore the config the router was saved "
            "with, or retrain it with the new settings."
        )


AutoConfig.register(TARoRouterConfig.model_type, TARoRouterConfig)
AutoModel.register(TARoRouterConfig, TARoRouter)
