"""Training the two learned parts of TARo: the token-level reward model (TRL) and the router (Trainer)."""

from .reward_model import (
    RewardModelConfig,
    RewardModelTrainer,
    evaluate_reward_model,
    push_reward_model,
    train_reward_model,
)
from .router import RouterTrainer, RouterTrainingConfig, TraceCollator, train_router

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
