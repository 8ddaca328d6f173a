"""Training the two learned parts of TARo: the token-level reward model (TRL) and the router (Trainer)."""

from ..extras import require

require("trl")  # before the trainers import it, so a missing [train] extra is named

from .collate import TraceCollator  # noqa: E402
from .reward_model import (  # noqa: E402
    RewardModelConfig,
    RewardModelTrainer,
    evaluate_reward_model,
    push_reward_model,
    train_reward_model,
)
from .router import RouterTrainer, RouterTrainingConfig, train_router  # noqa: E402

__all__ = [
    "RewardModelConfig",
    "RewardModelTrainer",
    "RouterTrainer",
    "RouterTrainingConfig",
    "TraceCollator",
    "evaluate_reward_model",
    "push_reward_model",
    "train_reward_model",
    "train_router",
]
