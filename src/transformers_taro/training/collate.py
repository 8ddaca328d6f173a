"""Tokenizing prompt + completion rows for teacher forcing: what both trainers score."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase


class TraceCollator:
    """Tokenizes `prompt` + `completion` rows: right-padded ids, mask, and shifted labels on completion tokens.

    `labels[:, t]` is the token that follows position t, or -100 where it belongs to the prompt or padding. The
    prompt is tokenized exactly as generation tokenizes it, so training contexts equal decoding contexts. A whole
    trace ends with EOS (`add_eos`); a single step scored on its own does not. Rows with a `weight_target` (the
    oracle objective's) also give `weight_targets`, `[B, G]`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = 512, add_eos: bool = True):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.add_eos = add_eos

    def __call__(self, rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        seqs, starts = [], []
        for row in rows:
            prompt = self.tokenizer(row["prompt"])["input_ids"]
            completion = self.tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
            if self.add_eos and self.tokenizer.eos_token_id is not None:
                completion = completion + [self.tokenizer.eos_token_id]
            if len(prompt) >= self.max_length:
                raise ValueError(
                    f"A prompt has {len(prompt)} tokens, at least max_length={self.max_length}: raise max_length."
                )
            seqs.append((prompt + completion)[: self.max_length])
            starts.append(len(prompt))
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, (seq, start) in enumerate(zip(seqs, starts)):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            # Position t predicts token t+1: score the positions whose next token is a completion token.
            labels[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if "weight_target" in rows[0]:  # the oracle objective's per-row target over the router's weight grid
            batch["weight_targets"] = torch.tensor([row["weight_target"] for row in rows], dtype=torch.float32)
        return batch
