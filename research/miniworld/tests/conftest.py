"""The mini-world's tests build their own problems and models: nothing reaches for the Hub."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
