"""Data sets for the check tests: DICOM JSON objects and PS3.10 files."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

__all__ = ["edited", "part10_bytes", "vl_photographic_json"]

_VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"


def edited(ds: dict[str, Any], *, extra: Mapping[str, Any] | None = None,
           drop: Sequence[str] = ()) -> dict[str, Any]:
    """Return the DICOM JSON object ``ds`` with ``extra`` attributes set and ``drop`` tags removed, in tag order."""
    ds.update(extra or {})
    for tag in drop:
        ds.pop(tag, None)
    return dict(sorted(ds.items()))


def vl_photographic_json(*, study: str, series: str, sop: str, pixel_uri: str | None,
                         extra: Mapping[str, Any] | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Return the DICOM JSON object of a VL Photographic image with the WIC baseline attributes.

    Pixel Data is a BulkDataURI to ``pixel_uri`` (absent when ``None``); see :func:`edited`
    for ``extra`` and ``drop``.
    """
    ds: dict[str, Any] = {
        "00080016": {"vr": "UI", "Value": [_VL_PHOTOGRAPHIC]},
        "00080018": {"vr": "UI", "Value": [sop]},
        "00080020": {"vr": "DA", "Value": ["20240102"]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "00080050": {"vr": "SH"},
        "00080060": {"vr": "CS", "Value": ["XC"]},
        "00080070": {"vr": "LO", "Value": ["ACME"]},
        "00080090": {"vr": "PN"},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["PID-1"]},
        "00100021": {"vr": "LO", "Value": ["HOSP"]},
        "00100030": {"vr": "DA"},
        "00100040": {"vr": "CS", "Value": ["F"]},
        "0020000D": {"vr": "UI", "Value": [study]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00200010": {"vr": "SH", "Value": ["S1"]},
        "00200011": {"vr": "IS", "Value": [1]},
        "00200013": {"vr": "IS", "Value": [1]},
    }
    if pixel_uri is not None:
        ds["7FE00010"] = {"vr": "OB", "BulkDataURI": pixel_uri}
    return edited(ds, extra=extra, drop=drop)


def part10_bytes(ds: Dataset, *, sop_class: str, sop_instance: str,
                 transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Give ``ds`` a File Meta Information and return it written as a PS3.10 file."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
