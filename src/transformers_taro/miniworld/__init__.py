"""A world small enough to train everything here: arithmetic word problems, two bases, a reward model, a router."""

from .pipeline import reproduce
from .problems import make_problems, make_tokenizer

__all__ = ["make_problems", "make_tokenizer", "reproduce"]
