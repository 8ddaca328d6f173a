"""transformers-taro: TARo (token-level adaptive routing) guided decoding for Hugging Face transformers.

Start with `TARoGuide` (a reward model plus a router or a fixed alpha, one folder). `TARoProcessor` is the
transformers-native `LogitsProcessor` underneath; `router_features` and `mix` are the two functions everything
else calls: what the router sees, and how its weight mixes the two models.
"""

from .defaults import DEFAULT_GUIDE, DEFAULT_MODEL
from .features import router_features
from .fused import FusedNotApplicable
from .guide import TARoGuide, TARoGuideConfig
from .mixing import mix
from .models import default_model_path
from .processor import TARoProcessor
from .router import TARoRouter, TARoRouterConfig
from .version import __version__

__all__ = [
    "DEFAULT_GUIDE",
    "DEFAULT_MODEL",
    "FusedNotApplicable",
    "TARoGuide",
    "TARoGuideConfig",
    "TARoProcessor",
    "TARoRouter",
    "TARoRouterConfig",
    "default_model_path",
    "mix",
    "__version__",
    "router_features",
]
