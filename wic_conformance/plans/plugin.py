"""pytest plugin entry point (``pytest11``): inert unless a ``--wic-*`` option is used.

The test-plan collection and the ``wic_*`` fixtures land with the Image Manager test plans.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``wic-conformance`` option group."""
    group = parser.getgroup("wic-conformance")
    group.addoption("--wic-rules", action="store", default=None, metavar="FILE",
                    help="rule profile (YAML) that switches off or re-levels S/D/U requirements")
