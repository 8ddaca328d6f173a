"""transformers-taro: TARo (token-level adaptive routing) guided decoding for Hugging Face transformers.

Start with `TARoGuide` (a reward model plus a router or a fixed alpha, one folder). `TARoProcessor` is the
transformers-native `LogitsProcessor` underneath; `mix` and `router_features` are the two functions everything
else calls.
"""

from .defaults import DEFAULT_GUIDE, DEFAULT_MODEL
from .features import guided_scores, mix, router_features
from .guide import TARoGuide, TARoGuideConfig, load_guide
from .models import default_model_path, load_causal_lm, load_tokenizer
from .processor import TARoProcessor
from .router import TARoRouter, TARoRouterConfig, TARoRouterOutput

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_GUIDE",
    "DEFAULT_MODEL",
    "TARoGuide",
    "TARoGuideConfig",
    "TARoProcessor",
    "TARoRouter",
    "TARoRouterConfig",
    "TARoRouterOutput",
    "default_model_path",
    "guided_scores",
    "load_causal_lm",
    "load_guide",
    "load_tokenizer",
    "mix",
    "router_features",
]
