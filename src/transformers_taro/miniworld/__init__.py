"""A world small enough to train everything here: arithmetic word problems, two bases, a reward model, a router."""

from .problems import make_problems, make_tokenizer
from .pipeline import reproduce

__all__ = ["make_problems", "make_tokenizer", "reproduce"]
