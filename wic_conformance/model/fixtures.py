"""The fixtures index (``fixtures/index.json``): sample payloads with provenance and expected verdicts.

Tests, plans and ``validate --fixtures`` refer to payloads by index key
(``"part10/vl-photographic"``), never by raw path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wic_conformance.errors import FixtureNotFoundError

__all__ = ["Fixture", "FixtureIndex", "default_fixtures_root"]


@dataclass(frozen=True, slots=True)
class Fixture:
    """One indexed payload."""

    key: str
    path: Path
    media_type: str
    kind: str
    expect: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """Return whether the fixture is labelled conformant."""
        return bool(self.expect.get("valid", True))

    @property
    def broken_requirements(self) -> tuple[str, ...]:
        """Return the requirement IDs a negative fixture is labelled as breaking."""
        return tuple(self.expect.get("requirements", ()))

    def read(self) -> bytes:
        """Return the payload bytes."""
        return self.path.read_bytes()


def default_fixtures_root() -> Path:
    """Return ``$WIC_FIXTURES``, else ``./fixtures``, else the checkout's ``fixtures/`` beside the package.

    Raises
    ------
    FixtureNotFoundError
        No fixtures folder with an ``index.json`` is found.
    """
    candidates = []
    if os.environ.get("WIC_FIXTURES"):
        candidates.append(Path(os.environ["WIC_FIXTURES"]))
    candidates.append(Path.cwd() / "fixtures")
    candidates.append(Path(__file__).resolve().parents[2] / "fixtures")
    for candidate in candidates:
        if (candidate / "index.json").is_file():
            return candidate
    raise FixtureNotFoundError(
        "no fixtures/index.json found (looked in $WIC_FIXTURES, ./fixtures and beside the package); "
        "run from a checkout or set WIC_FIXTURES")


class FixtureIndex:
    """The parsed ``index.json`` of a fixtures folder."""

    def __init__(self, root: Path, entries: Mapping[str, Fixture]) -> None:
        self.root = root
        self._entries = dict(entries)

    @classmethod
    def load(cls, root: str | Path | None = None) -> FixtureIndex:
        """Read ``index.json`` from ``root`` (default: :func:`default_fixtures_root`).

        Raises
        ------
        FixtureNotFoundError
            The index is missing, unreadable, or names a file that does not exist.
        """
        base = Path(root) if root is not None else default_fixtures_root()
        try:
            data = json.loads((base / "index.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise FixtureNotFoundError(f"cannot read {base / 'index.json'}: {exc}") from None
        entries: dict[str, Fixture] = {}
        for key, raw in data.get("fixtures", {}).items():
            path = base / raw["path"]
            if not path.is_file():
                raise FixtureNotFoundError(f"fixture {key!r}: {path} does not exist")
            entries[key] = Fixture(key, path, raw["media_type"], raw["kind"], raw.get("expect", {}),
                                   raw.get("properties", {}), raw.get("provenance", {}))
        return cls(base, entries)

    def __getitem__(self, key: str) -> Fixture:
        try:
            return self._entries[key]
        except KeyError:
            raise FixtureNotFoundError(f"no fixture {key!r} in {self.root / 'index.json'}") from None

    def __iter__(self) -> Iterator[Fixture]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def bulk_parts(self, fixture: Fixture) -> list[tuple[dict[str, str], bytes]]:
        """Return the bulk data parts a metadata fixture references (its ``properties.bulk``)."""
        parts = []
        for bulk in fixture.properties.get("bulk", ()):
            media = self[bulk["fixture"]]
            parts.append(({"Content-Type": bulk.get("media_type", media.media_type),
                           "Content-Location": bulk["content_location"]}, media.read()))
        return parts
