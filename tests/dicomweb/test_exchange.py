from __future__ import annotations

import hashlib
from pathlib import Path

from wic_conformance.dicomweb.exchange import Body, Exchange, Headers


class TestHeaders:
    def test_case_insensitive_and_multi_valued(self) -> None:
        h = Headers.of([("Content-Type", "a/b"), ("X-A", "1"), ("x-a", "2")])
        assert h.get("content-type") == "a/b"
        assert h.get_all("X-A") == ["1", "2"]
        assert "CONTENT-TYPE" in h
        assert h.get("missing") is None

    def test_redaction_keeps_names_and_order(self) -> None:
        h = Headers.of({"Authorization": "Bearer s3cret", "Cookie": "a=b", "Accept": "x/y"}).redacted()
        assert h.items == (("Authorization", "<redacted>"), ("Cookie", "<redacted>"), ("Accept", "x/y"))


class TestBody:
    def test_memory_and_file_bodies_agree(self, tmp_path: Path) -> None:
        data = bytes(range(256)) * 10_000
        path = tmp_path / "b.bin"
        path.write_bytes(data)
        mem, disk = Body.of(data), Body.from_file(path)
        assert len(mem) == len(disk) == len(data)
        assert mem.sha256() == disk.sha256() == hashlib.sha256(data).hexdigest()
        assert b"".join(disk.chunks(1000)) == data
        assert disk.head(5) == data[:5]
        assert not disk.in_memory and mem.in_memory

    def test_exchange_ids_are_unique(self) -> None:
        assert Exchange().id != Exchange().id
