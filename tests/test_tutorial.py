"""docs/tutorial.md runs as written: doctest over the markdown."""

from __future__ import annotations

import doctest
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def test_tutorial_examples_run() -> None:
    result = doctest.testfile(str(TUTORIAL), module_relative=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 50
    assert result.failed == 0
