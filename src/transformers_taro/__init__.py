"""transformers-taro: TARo (token-level adaptive routing) guided decoding for Hugging Face transformers."""

from .features import guided_scores, router_features
from .processor import TARoProcessor
from .router import TARoRouter, TARoRouterConfig, TARoRouterOutput

__version__ = "0.1.0"

__all__ = [
    "TARoProcessor",
    "TARoRouter",
    "TARoRouterConfig",
    "TARoRouterOutput",
    "guided_scores",
    "router_features",
]
