"""What a test needs from the machine: outside CI a missing tool skips the
test, under CI=true (set by .ci/run) it fails, so nothing is silently left out
there."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


def in_ci() -> bool:
    """CI sets CI=true; there a missing requirement is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str) -> None:
    """Skip (outside CI) or fail (in CI) a test that cannot run here."""
    if in_ci():
        pytest.fail(message + " (CI=true: this test must run)", pytrace=False)
    pytest.skip(message)


def require_program(name: str) -> str:
    """The path of program ``name``; skips or fails when it is not installed."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed")
    return path or ""


def require_module(name: str) -> None:
    """Skips or fails when Python module ``name`` cannot be imported."""
    if importlib.util.find_spec(name) is None:
        unavailable(f"Python module {name} is not installed")
