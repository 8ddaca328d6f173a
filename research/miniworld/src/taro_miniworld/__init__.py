"""A world small enough to train everything here: two domains of word problems, two bases, a reward model trained
on one domain, two routers."""

from .pipeline import CHECKPOINTS, MiniworldConfig, reproduce
from .problems import make_problems, make_tokenizer

__all__ = ["CHECKPOINTS", "MiniworldConfig", "make_problems", "make_tokenizer", "reproduce"]
