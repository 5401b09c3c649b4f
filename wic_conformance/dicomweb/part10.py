"""Read PS3.10 files into pydicom Datasets, recording deviations instead of raising.

References
----------
PS3.10 §7.1 (File Meta Information); PS3.18 §8.7.3.5.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from wic_conformance.dicomweb.deviation import Deviation
from wic_conformance.dicomweb.exchange import Body

__all__ = ["Part10Instance", "read_part10"]


@dataclass(frozen=True, slots=True)
class Part10Instance:
    """A PS3.10 object: its bytes, the decoded dataset (with ``file_meta``) and deviations.

    ``origin`` says whether it was sent (``"request"``), retrieved (``"retrieved"``) or
    judged as a file (``"file"``).
    """

    location: str
    body: Body
    dataset: Dataset | None
    origin: str = "file"
    deviations: tuple[Deviation, ...] = field(default=())

    @property
    def transfer_syntax(self) -> str | None:
        """Return (0002,0010) Transfer Syntax UID, if the file meta has it."""
        if self.dataset is None or not hasattr(self.dataset, "file_meta"):
            return None
        value = self.dataset.file_meta.get("TransferSyntaxUID")
        return str(value) if value else None


def read_part10(body: Body | bytes, *, location: str = "", origin: str = "file") -> Part10Instance:
    """Decode a PS3.10 file; missing preamble/``DICM`` or a decode failure becomes a deviation."""
    b = Body.of(body)
    deviations: list[Deviation] = []
    head = b.head(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        deviations.append(Deviation(
            "part10.no_preamble", "no 128-byte preamble followed by 'DICM' (not a PS3.10 file)", location,
            fatal=True,
        ))
        return Part10Instance(location, b, None, origin, tuple(deviations))
    try:
        with b.open() as handle:
            ds = dcmread(handle)
            # Force a full parse so that truncated files surface here, not later inside a check.
            for _elem in ds.iterall():
                pass
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, NotImplementedError) as exc:
        deviations.append(Deviation("part10.unreadable", f"cannot decode the PS3.10 file: {exc}", location,
                                    fatal=True))
        return Part10Instance(location, b, None, origin, tuple(deviations))
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        deviations.append(Deviation("part10.no_transfer_syntax", "File Meta has no (0002,0010)", location))
    return Part10Instance(location, b, ds, origin, tuple(deviations))
