"""Shared fixtures: the real-kernel oracle and the differential runner.

Imports of the oracle and of the comparison helpers happen inside the
fixtures, so that the rest of the suite is collected even when those are
broken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def kernel_oracle() -> Callable[..., Any]:
    """:func:`pktdemux.oracle.run_scenario`, once a namespace with a TUN
    device was seen to work here; skips (fails under CI=true) otherwise."""
    from kernel_support import require_oracle

    from pktdemux.oracle import (
        OracleUnavailable,
        Scenario,
        check_available,
        run_scenario,
    )

    try:
        check_available()
        run_scenario(Scenario.evenly_spaced({"host": {"addresses": ["10.0.0.1/24"]}}, []))
    except OracleUnavailable as exc:
        require_oracle(exc)
    return run_scenario


@pytest.fixture
def differential(kernel_oracle: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`kernel_support.Case` on Linux and on the emulation;
    returns (kernel result, emulation results, disagreements)."""
    from kernel_support import run_both

    return run_both
