"""The simulated Image Manager's storage: Part-10 files on disk plus an SQLite index.

Files live under ``root/instances/{study}/{series}/{sop}.dcm``; the index
``root/index.sqlite3`` (WAL mode) holds one row per instance with the main
identifying attributes and the instance metadata as DICOM JSON without bulk data,
which QIDO-RS matching and WADO-RS metadata are served from.  That metadata is derived
from the stored file when it is first read, not while the instance is stored (storing
is on the STOW-RS request path, most instances are never searched for in detail): an
empty ``metadata`` column means "not derived yet".

A store is safe for concurrent use from several threads (one SQLite connection per
thread; writes serialised by SQLite's write lock).  Storing is atomic: the bytes go to
a temporary file first, and the file is moved into place and the index row written in
one index transaction; if anything fails, both are rolled back, so no half-stored
instance can be seen.  The bytes are written once: a file-backed body (a part of a
spooled request) is copied in chunks, and :meth:`InstanceStore.stage` lets a caller
validate the temporary file before :meth:`StagedInstance.commit` moves it into place.
Values that are still deferred reads (Pixel Data of a decoded upload) are not read
to build the index.  Power-loss durability (fsync) is the ``durable`` option.
Leftovers of a crash (temporary files, files without a row, rows without a file) are
cleared when the store is opened again.

References
----------
DICOM PS3.18 §10.5 (Store transaction), §10.6 (Search transaction), §10.4 (Retrieve transaction).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydicom import Dataset
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from wic_conformance.dicomweb.exchange import Body
from wic_conformance.dicomweb.part10 import read_part10
from wic_conformance.dicomweb.qido import MatchKind, QidoQuery, QueryLevel, is_bulk_data, matches, to_result
from wic_conformance.dicomweb.qido import without_bulk_data as _without_bulk_data
from wic_conformance.errors import UsageError

try:  # POSIX: one store per root at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DuplicatePolicy", "InstanceStore", "PutResult", "StagedInstance", "StoredRef", "UnstorableInstanceError"]

log = logging.getLogger(__name__)

# 2: ``metadata`` and ``bulk_data`` may be empty (not derived yet); a version 1 index is read as it is.
_SCHEMA_VERSION = 2
_SAFE_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_CHUNK = 1 << 20  # copy buffer for file-backed bodies
_UNDEFINED_LENGTH = 0xFFFFFFFF
# The binary VRs and length above which a binary value is bulk data (as in dicomweb.qido.is_bulk_data).
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_BULK_THRESHOLD = 1024

# column name -> (SQL type, source keyword or None for a computed column)
_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("sop_instance_uid", "TEXT PRIMARY KEY", "SOPInstanceUID"),
    ("study_instance_uid", "TEXT NOT NULL", "StudyInstanceUID"),
    ("series_instance_uid", "TEXT NOT NULL", "SeriesInstanceUID"),
    ("patient_id", "TEXT", "PatientID"),
    ("patient_name", "TEXT", "PatientName"),
    ("patient_birth_date", "TEXT", "PatientBirthDate"),
    ("patient_sex", "TEXT", "PatientSex"),
    ("accession_number", "TEXT", "AccessionNumber"),
    ("study_date", "TEXT", "StudyDate"),
    ("study_time", "TEXT", "StudyTime"),
    ("study_description", "TEXT", "StudyDescription"),
    ("study_id", "TEXT", "StudyID"),
    ("referring_physician_name", "TEXT", "ReferringPhysicianName"),
    ("modality", "TEXT", "Modality"),
    ("series_number", "INTEGER", "SeriesNumber"),
    ("series_description", "TEXT", "SeriesDescription"),
    ("sop_class_uid", "TEXT", "SOPClassUID"),
    ("instance_number", "INTEGER", "InstanceNumber"),
    ("rows", "INTEGER", "Rows"),
    ("columns", "INTEGER", "Columns"),
    ("number_of_frames", "INTEGER", "NumberOfFrames"),
    ("transfer_syntax_uid", "TEXT", None),
    ("size", "INTEGER NOT NULL", None),
    ("sha256", "TEXT NOT NULL", None),
    ("stored_at", "TEXT NOT NULL", None),
    ("path", "TEXT NOT NULL", None),
    ("metadata", "TEXT NOT NULL", None),
    ("bulk_data", "TEXT NOT NULL", None),
)
_COLUMN_NAMES = tuple(name for name, _, _ in _COLUMNS)
_INTEGER_COLUMNS = frozenset(name for name, sql, _ in _COLUMNS if sql.startswith("INTEGER"))

_UID_COLUMNS = {
    0x0020000D: "study_instance_uid",
    0x0020000E: "series_instance_uid",
    0x00080018: "sop_instance_uid",
    0x00080016: "sop_class_uid",
}

# Studies in the order they were first stored, then series and instance numbers.
_ORDER = (
    "ORDER BY (SELECT MIN(f.rowid) FROM instances AS f WHERE f.study_instance_uid = i.study_instance_uid),"
    " i.study_instance_uid, i.series_number IS NULL, i.series_number, i.series_instance_uid,"
    " i.instance_number IS NULL, i.instance_number, i.sop_instance_uid"
)


def _q(name: str) -> str:
    return f'"{name}"'


class UnstorableInstanceError(ValueError):
    """The dataset cannot be stored: a Study, Series or SOP Instance UID is missing or unusable."""


class DuplicatePolicy(StrEnum):
    """What :meth:`InstanceStore.put` does with an instance whose SOP Instance UID is already stored."""

    REJECT = "reject"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class PutResult:
    """The outcome of :meth:`InstanceStore.put`.

    Attributes
    ----------
    stored : bool
        Whether the new bytes were stored (``False`` for a rejected duplicate).
    replaced : bool
        Whether an instance with the same SOP Instance UID was replaced.
    path : Path
        Where the instance with this SOP Instance UID now lives (the old one if rejected).
    """

    stored: bool
    replaced: bool
    path: Path


@dataclass(frozen=True, slots=True)
class StoredRef:
    """One stored instance, as the index knows it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    series_number: int | None
    instance_number: int | None
    path: Path
    size: int
    sha256: str
    stored_at: str


#: Gives the BulkDataURI of a bulk data attribute (tag) of a stored instance, for WADO-RS metadata.
BulkDataUriBuilder = Callable[[StoredRef, int], str]


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _integer(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def _uid(ds: Dataset, keyword: str) -> str:
    value = _text(ds, keyword)
    if not value:
        raise UnstorableInstanceError(f"the dataset has no {keyword}")
    if not _SAFE_UID.fullmatch(value):
        raise UnstorableInstanceError(f"{keyword} {value!r} cannot name a file")
    return value


def _uids(ds: Dataset) -> tuple[str, str, str]:
    """Return the Study, Series and SOP Instance UIDs that name an instance's file."""
    return _uid(ds, "StudyInstanceUID"), _uid(ds, "SeriesInstanceUID"), _uid(ds, "SOPInstanceUID")


def _metadata_json(ds: Dataset) -> str:
    meta = _without_bulk_data(ds)
    try:
        doc = meta.to_json_dict()
    except Exception as exc:  # invalid values: keep the rest, say so
        log.warning("metadata of %s has attributes that do not convert to DICOM JSON (%s); they are left out "
                    "of the index", ds.get("SOPInstanceUID"), exc)
        doc = meta.to_json_dict(suppress_invalid_tags=True)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _deferred_bulk_vr(ds: Dataset, tag: BaseTag) -> str | None:
    """Return the VR of a top-level element whose value is a deferred read and is bulk data, else ``None``.

    Deciding needs only the tag, the VR and the length, so the value is not read;
    the rule is :func:`~wic_conformance.dicomweb.qido.is_bulk_data`'s.
    """
    elem = ds.get_item(tag, keep_deferred=True)
    if not (isinstance(elem, RawDataElement) and elem.value is None and elem.length != 0):
        return None
    vr = str(elem.VR) if elem.VR else (dictionary_VR(tag) if dictionary_has_tag(tag) else "")
    if not vr:
        return None
    if is_bulk_data(DataElement(tag, vr, None)):
        return vr
    long_binary = vr in _BINARY_VRS and (elem.length == _UNDEFINED_LENGTH or elem.length > _BULK_THRESHOLD)
    return vr if long_binary else None


def _metadata_and_bulk(ds: Dataset) -> tuple[str, str]:
    """Return the index's metadata (DICOM JSON without bulk data) and its list of top-level bulk data attributes.

    Bulk data values that are still deferred reads (see :mod:`~wic_conformance.dicomweb.part10`)
    are listed without being read.
    """
    kept = Dataset()
    bulk: list[dict[str, str]] = []
    for tag in sorted(ds.keys()):
        vr = _deferred_bulk_vr(ds, tag)
        if vr is not None:
            bulk.append({"tag": f"{int(tag):08X}", "vr": vr})
            continue
        elem = ds[tag]
        if is_bulk_data(elem):
            bulk.append({"tag": f"{int(tag):08X}", "vr": str(elem.VR)})
            continue
        kept.add(elem)
    return _metadata_json(kept), json.dumps(bulk)


def _copy_hashed(fd: int, data: bytes | Body) -> tuple[int, str]:
    """Write ``data`` to the descriptor ``fd``, in chunks for a file-backed body; return its size and SHA-256."""
    digest = hashlib.sha256()
    if isinstance(data, bytes | bytearray | memoryview) or data.path is None:
        raw = memoryview(data if isinstance(data, bytes | bytearray | memoryview) else data.read())
        digest.update(raw)
        _write_all(fd, raw)
        return len(raw), digest.hexdigest()
    buffer = bytearray(min(_CHUNK, max(data.size, 1)))
    view = memoryview(buffer)
    left = data.size
    with open(data.path, "rb", buffering=0) as source:
        source.seek(data.offset)
        while left > 0:
            got = source.readinto(view[:min(left, len(view))])
            if not got:
                raise OSError(f"{data.path} ended {left} bytes before the end of the body")
            digest.update(view[:got])
            _write_all(fd, view[:got])
            left -= got
    return data.size, digest.hexdigest()


def _write_all(fd: int, data: memoryview) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class StagedInstance:
    """An instance written to a temporary file by :meth:`InstanceStore.stage`, not yet part of the store.

    Validate :attr:`path` (a whole PS3.10 file), then :meth:`commit` it (moved into
    place and indexed atomically) or :meth:`discard` it.  Used as a context manager,
    whatever was not committed is discarded on exit.

    Attributes
    ----------
    path : Path
        The temporary file holding the bytes.
    final_path : Path
        Where :meth:`commit` moves it.
    dataset : Dataset
        The instance, for the index row.
    sop_uid : str
        Its SOP Instance UID.
    size : int
        The number of bytes written.
    sha256 : str
        Their SHA-256 (hex).
    """

    def __init__(self, store: InstanceStore, dataset: Dataset, sop_uid: str, final_path: Path, path: Path,
                 size: int, sha256: str) -> None:
        self._store = store
        self.dataset = dataset
        self.sop_uid = sop_uid
        self.final_path = final_path
        self.path = path
        self.size = size
        self.sha256 = sha256
        self._done = False

    def commit(self, *, on_duplicate: DuplicatePolicy) -> PutResult:
        """Move the file into place and write its index row in one transaction (see :meth:`InstanceStore.put`).

        Raises
        ------
        UsageError
            If the instance was already committed or discarded, or the store is closed.
        """
        if self._done:
            raise UsageError(f"the staged instance {self.sop_uid} was already committed or discarded")
        self._done = True
        try:
            return self._store._commit(self, DuplicatePolicy(on_duplicate))
        finally:
            self.path.unlink(missing_ok=True)  # left over only when nothing was moved into place

    def discard(self) -> None:
        """Remove the temporary file (nothing happens after a commit)."""
        if not self._done:
            self._done = True
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> StagedInstance:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


class InstanceStore:
    """Part-10 instances on disk with an SQLite index, for the simulated Image Manager.

    Parameters
    ----------
    root : Path or None
        The store's folder; reopening the same folder finds everything stored before.
        ``None`` makes a temporary folder that :meth:`close` removes.
    durable : bool
        Make every stored instance survive a power loss: the file and its folder are
        fsync'ed before the index row is committed, and the index commits with
        ``synchronous = FULL``.  Off by default: the atomic rename and the index
        transaction already protect against a crashed process, and fsync costs a
        disk flush per instance.

    Raises
    ------
    UsageError
        If another open store holds ``root``, or the index has an unknown schema version.

    Examples
    --------
    >>> with InstanceStore(None) as store:  # doctest: +SKIP
    ...     store.put(ds, part10_bytes, on_duplicate=DuplicatePolicy.REJECT)

    References
    ----------
    PS3.18 §10.5 (Store), §10.6 (Search), §10.4 (Retrieve).
    """

    def __init__(self, root: Path | None, *, durable: bool = False) -> None:
        self.durable = durable
        self._temporary = root is None
        self._root = Path(tempfile.mkdtemp(prefix="wic-store-")) if root is None else Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._instances = self._root / "instances"
        self._instances.mkdir(exist_ok=True)
        self._db_path = self._root / "index.sqlite3"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._lock_file: IO[bytes] | None = None
        try:
            self._acquire_root()
            self._create_schema()
            self._recover()
        except BaseException:
            self.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """Return the store's folder."""
        return self._root

    def close(self) -> None:
        """Close the index connections; remove the folder if it was temporary.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self._temporary:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> InstanceStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _acquire_root(self) -> None:
        self._lock_file = open(self._root / ".lock", "wb")  # noqa: SIM115 - held until close()
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another open InstanceStore holds {self._root}") from None

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise UsageError("the InstanceStore is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._db_path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            with self._lock:
                if self._closed:
                    conn.close()
                    raise UsageError("the InstanceStore is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, kind: str = "DEFERRED") -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute(f"BEGIN {kind}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _create_schema(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise UsageError(f"{self._db_path} has index schema version {version}; this toolkit knows "
                             f"{_SCHEMA_VERSION}")
        columns = ", ".join(f"{_q(name)} {sql}" for name, sql, _ in _COLUMNS)
        with self._transaction("IMMEDIATE") as tx:
            tx.execute(f"CREATE TABLE IF NOT EXISTS instances ({columns})")
            tx.execute("CREATE INDEX IF NOT EXISTS instances_study ON instances "
                       "(study_instance_uid, series_instance_uid)")
            tx.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _recover(self) -> None:
        """Clear what a crash left: temporary files, backups, files without rows, rows without files."""
        with self._transaction("IMMEDIATE") as tx:
            rows = {r["path"]: (r["sop_instance_uid"], r["sha256"])
                    for r in tx.execute("SELECT path, sop_instance_uid, sha256 FROM instances")}
            for path in sorted(self._instances.rglob("*")):
                if not path.is_file():
                    continue
                if path.name.endswith(".tmp"):
                    log.warning("removing unfinished temporary file %s", path)
                    path.unlink()
                elif path.name.endswith(".dcm.bak"):
                    self._recover_backup(path, rows)
            for path in sorted(self._instances.rglob("*.dcm")):
                rel = path.relative_to(self._root).as_posix()
                if rel not in rows:
                    log.warning("removing %s: no index row refers to it", path)
                    path.unlink()
            for rel, (sop, _sha) in rows.items():
                if not (self._root / rel).is_file():
                    log.warning("dropping index row of %s: its file %s is missing", sop, rel)
                    tx.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (sop,))

    def _recover_backup(self, backup: Path, rows: dict[str, tuple[str, str]]) -> None:
        final = backup.with_name(backup.name.removesuffix(".bak"))
        row = rows.get(final.relative_to(self._root).as_posix())
        if row is not None and not (final.is_file() and _sha256_file(final) == row[1]) \
                and _sha256_file(backup) == row[1]:
            log.warning("restoring %s from its backup", final)
            os.replace(backup, final)
        else:
            backup.unlink()

    # --- storing --------------------------------------------------------------------------------

    def _row(self, ds: Dataset, size: int, sha256: str, path: Path) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, _sql, keyword in _COLUMNS:
            if keyword is None:
                continue
            row[name] = _integer(ds, keyword) if name in _INTEGER_COLUMNS else _text(ds, keyword)
        meta = getattr(ds, "file_meta", None)
        row["transfer_syntax_uid"] = _text(meta, "TransferSyntaxUID") if meta is not None else None
        row["size"] = size
        row["sha256"] = sha256
        row["stored_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        row["path"] = path.relative_to(self._root).as_posix()
        row["metadata"] = row["bulk_data"] = ""  # derived from the file on first read (_derived_metadata)
        return row

    def _derived_metadata(self, rows: list[sqlite3.Row]) -> dict[str, tuple[str, str]]:
        """Return ``{sop: (metadata, bulk_data)}`` for rows, deriving (and keeping) what is not derived yet.

        A file that cannot be decoded any more (changed behind the store's back) gives empty
        metadata and a logged warning rather than a failed read.
        """
        out: dict[str, tuple[str, str]] = {}
        derived: list[tuple[str, str, str, str]] = []
        for row in rows:
            sop, metadata, bulk = row["sop_instance_uid"], row["metadata"], row["bulk_data"]
            if not metadata:
                try:
                    instance = read_part10(Body.from_file(self._root / row["path"]), location=row["path"])
                    problem = "; ".join(d.message for d in instance.deviations) if instance.dataset is None else ""
                except OSError as exc:  # replaced or moved meanwhile: the next read finds the new row
                    instance, problem = None, str(exc)
                if instance is None or instance.dataset is None:
                    log.warning("cannot derive the metadata of %s from %s: %s", sop, row["path"], problem)
                    metadata, bulk = "{}", "[]"
                else:
                    metadata, bulk = _metadata_and_bulk(instance.dataset)
                    derived.append((metadata, bulk, sop, row["sha256"]))
            out[sop] = (metadata, bulk)
        if derived:  # only onto the row the file was read for (a resend may have replaced it meanwhile)
            self._connect().executemany(
                "UPDATE instances SET metadata = ?, bulk_data = ? WHERE sop_instance_uid = ? AND sha256 = ?"
                " AND metadata = ''", derived)
        return out

    def _insert_row(self, conn: sqlite3.Connection, row: dict[str, Any], rowid: int | None) -> None:
        """Insert one index row (keeping ``rowid`` when replacing, so the study keeps its place)."""
        names = ("rowid", *_COLUMN_NAMES)
        values = (rowid, *(row[name] for name in _COLUMN_NAMES))
        placeholders = ", ".join("?" for _ in names)
        sql = f"INSERT INTO instances ({', '.join(_q(n) for n in names)}) VALUES ({placeholders})"
        conn.execute(sql, values)

    def _write_temp(self, folder: Path, sop: str, data: bytes | Body) -> tuple[Path, int, str]:
        """Write ``data`` to a new temporary file in ``folder``; return its path, size and SHA-256."""
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{sop}.", suffix=".tmp")
        except FileNotFoundError:  # the first instance of its series: make the folders only then
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{sop}.", suffix=".tmp")
        try:
            try:
                size, digest = _copy_hashed(fd, data)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name), size, digest

    def stage(self, ds: Dataset, data: bytes | Body) -> StagedInstance:
        """Write an instance to a temporary file next to its final place, ready to be validated and committed.

        The bytes are written once, in chunks (a file-backed :class:`Body` is never
        loaded whole), and are what :meth:`StagedInstance.commit` moves into place.
        Until then nothing is visible in the store; use the result as a context
        manager so that an uncommitted temporary file is removed.

        Parameters
        ----------
        ds : Dataset
            The instance, as decoded from ``data`` (large values may be deferred reads:
            they are not loaded to build the index).
        data : bytes or Body
            The PS3.10 bytes, stored unchanged.

        Returns
        -------
        StagedInstance

        Raises
        ------
        UnstorableInstanceError
            If the Study, Series or SOP Instance UID is missing or cannot name a file.
        UsageError
            If the store is closed.
        """
        if self._closed:
            raise UsageError("the InstanceStore is closed")
        study, series, sop = _uids(ds)
        final = self._instances / study / series / f"{sop}.dcm"
        temp, size, digest = self._write_temp(final.parent, sop, data)
        return StagedInstance(self, ds, sop, final, temp, size, digest)

    def put(self, ds: Dataset, data: bytes | Body, *, on_duplicate: DuplicatePolicy) -> PutResult:
        """Store one instance atomically.

        Parameters
        ----------
        ds : Dataset
            The instance, as decoded from ``data`` (its ``file_meta`` gives the transfer syntax).
        data : bytes or Body
            The Part-10 bytes exactly as received; they are stored unchanged (a file-backed
            body, possibly a byte range of a spooled request, is copied in chunks).
        on_duplicate : DuplicatePolicy
            What to do when the SOP Instance UID is already stored.

        Returns
        -------
        PutResult

        Raises
        ------
        UnstorableInstanceError
            If the Study, Series or SOP Instance UID is missing or cannot name a file.
        UsageError
            If the store is closed.

        References
        ----------
        PS3.18 §10.5 (Store transaction).
        """
        policy = DuplicatePolicy(on_duplicate)
        _study, _series, sop = _uids(ds)
        if policy is DuplicatePolicy.REJECT:
            existing_path = self._path_of(sop)
            if existing_path is not None:
                return PutResult(stored=False, replaced=False, path=existing_path)
        with self.stage(ds, data) as staged:
            return staged.commit(on_duplicate=policy)

    def _commit(self, staged: StagedInstance, policy: DuplicatePolicy) -> PutResult:
        sop, final, temp = staged.sop_uid, staged.final_path, staged.path
        row = self._row(staged.dataset, staged.size, staged.sha256, final)
        backup: Path | None = None
        placed = False
        old_path: Path | None = None
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            existing = conn.execute(
                "SELECT rowid, path FROM instances WHERE sop_instance_uid = ?", (sop,)
            ).fetchone()
            if existing is not None and policy is DuplicatePolicy.REJECT:
                conn.execute("ROLLBACK")
                return PutResult(stored=False, replaced=False, path=self._root / existing["path"])
            rowid = None
            if existing is not None:
                rowid = existing["rowid"]
                old_path = self._root / existing["path"]
                conn.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (sop,))
            if final.exists():  # the replaced instance, or a file a crash left without a row
                backup = final.with_name(final.name + ".bak")
                os.replace(final, backup)
            os.replace(temp, final)
            placed = True
            if self.durable:
                _fsync_dir(final.parent)
            self._insert_row(conn, row, rowid)
            conn.execute("COMMIT")
        except BaseException:
            if placed:
                final.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, final)
                backup = None
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        if backup is not None:
            backup.unlink(missing_ok=True)
        if old_path is not None and old_path != final:
            old_path.unlink(missing_ok=True)
        return PutResult(stored=True, replaced=old_path is not None, path=final)

    # --- reading --------------------------------------------------------------------------------

    def _path_of(self, sop: str) -> Path | None:
        row = self._connect().execute(
            "SELECT path FROM instances WHERE sop_instance_uid = ?", (sop,)
        ).fetchone()
        return None if row is None else self._root / row["path"]

    def exists(self, sop_uid: str) -> bool:
        """Return whether an instance with this SOP Instance UID is stored."""
        return self._path_of(sop_uid) is not None

    def get_path(self, study: str, series: str, sop: str) -> Path | None:
        """Return the file of the instance, or ``None`` if the three UIDs do not name a stored instance."""
        row = self._connect().execute(
            "SELECT path FROM instances WHERE study_instance_uid = ? AND series_instance_uid = ?"
            " AND sop_instance_uid = ?", (study, series, sop),
        ).fetchone()
        return None if row is None else self._root / row["path"]

    def _ref(self, row: sqlite3.Row) -> StoredRef:
        return StoredRef(
            study_uid=row["study_instance_uid"],
            series_uid=row["series_instance_uid"],
            sop_uid=row["sop_instance_uid"],
            sop_class_uid=row["sop_class_uid"],
            transfer_syntax_uid=row["transfer_syntax_uid"],
            series_number=row["series_number"],
            instance_number=row["instance_number"],
            path=self._root / row["path"],
            size=row["size"],
            sha256=row["sha256"],
            stored_at=row["stored_at"],
        )

    def _select(self, study: str | None, series: str | None, sop: str | None) -> list[sqlite3.Row]:
        clauses: list[str] = []
        args: list[str] = []
        for column, value in (("study_instance_uid", study), ("series_instance_uid", series),
                              ("sop_instance_uid", sop)):
            if value is not None:
                clauses.append(f"i.{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._connect().execute(f"SELECT i.* FROM instances AS i {where} {_ORDER}", args).fetchall()

    def instances(
        self, study: str | None = None, series: str | None = None, sop: str | None = None
    ) -> list[StoredRef]:
        """Return the stored instances under the given UIDs (all if none), by series then instance number.

        Studies come in the order they were first stored; within a study, series by
        Series Number and instances by Instance Number (missing numbers last).
        """
        return [self._ref(row) for row in self._select(study, series, sop)]

    def metadata(
        self,
        study: str,
        series: str | None = None,
        sop: str | None = None,
        *,
        bulk_data_uri: BulkDataUriBuilder | None = None,
    ) -> list[dict[str, Any]]:
        """Return the DICOM JSON metadata of the study, series or instance, one dict per instance.

        Bulk data are left out unless ``bulk_data_uri`` is given; then each top-level bulk
        data attribute is present with the ``BulkDataURI`` it returns.

        References
        ----------
        PS3.18 §10.4.1.1.2 (metadata resources), Annex F (DICOM JSON Model).
        """
        out: list[dict[str, Any]] = []
        rows = self._select(study, series, sop)
        derived = self._derived_metadata(rows)
        for row in rows:
            metadata, bulk = derived[row["sop_instance_uid"]]
            doc: dict[str, Any] = json.loads(metadata)
            if bulk_data_uri is not None:
                ref = self._ref(row)
                for item in json.loads(bulk):
                    uri = bulk_data_uri(ref, int(item["tag"], 16))
                    doc[item["tag"]] = {"vr": item["vr"], "BulkDataURI": uri}
                doc = dict(sorted(doc.items()))
            out.append(doc)
        return out

    # --- searching ------------------------------------------------------------------------------

    @staticmethod
    def _prefilter(query: QidoQuery) -> tuple[str, list[str]]:
        clauses: list[str] = []
        args: list[str] = []
        if query.study_uid is not None:
            clauses.append("i.study_instance_uid = ?")
            args.append(query.study_uid)
        if query.series_uid is not None:
            clauses.append("i.series_instance_uid = ?")
            args.append(query.series_uid)
        for match in query.matches:
            column = _UID_COLUMNS.get(match.tag)
            if column is None or match.kind not in (MatchKind.SINGLE_VALUE, MatchKind.UID_LIST):
                continue
            clauses.append(f"i.{column} IN ({', '.join('?' for _ in match.values)})")
            args.extend(match.values)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args

    def search(self, query: QidoQuery, *, base_url: str | None = None) -> list[dict[str, Any]]:
        """Run a Search transaction: return the matching studies, series or instances as DICOM JSON.

        Each result carries the computed attributes ModalitiesInStudy, SOPClassesInStudy,
        NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, NumberOfSeriesRelatedInstances
        and InstanceAvailability (``ONLINE``) where :func:`~wic_conformance.dicomweb.qido.to_result`
        keeps them, and RetrieveURL of the result's own level when ``base_url`` is given
        (``{base_url}/studies/{study}[/series/{series}[/instances/{sop}]]``).  Counts cover the
        whole study or series, not just the matching instances.  Keys below the query level
        match relationally: a study matches when one of its instances matches every key.

        Results come in a stable order (studies as first stored, then series and instance
        numbers), so ``offset`` and ``limit`` page through them consistently.

        References
        ----------
        PS3.18 §10.6 (Search transaction), Tables 10.6.3-3 to 10.6.3-5; PS3.4 C.2.2.2.
        """
        where, args = self._prefilter(query)
        base = base_url.rstrip("/") if base_url is not None else None
        with self._transaction() as conn:  # one snapshot for both reads
            rows = conn.execute(
                f"SELECT i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, i.metadata, i.bulk_data,"
                f" i.path, i.sha256 FROM instances AS i {where} {_ORDER}", args,
            ).fetchall()
            related = conn.execute(
                "SELECT study_instance_uid, series_instance_uid, modality, sop_class_uid FROM instances"
                f" WHERE study_instance_uid IN (SELECT i.study_instance_uid FROM instances AS i {where})",
                args,
            ).fetchall()
        studies: dict[str, dict[str, Any]] = {}
        series_counts: dict[tuple[str, str], int] = {}
        for r in related:
            st = studies.setdefault(
                r[0], {"series": set(), "count": 0, "modalities": set(), "classes": set()})
            st["series"].add(r[1])
            st["count"] += 1
            if r[2]:
                st["modalities"].add(r[2])
            if r[3]:
                st["classes"].add(r[3])
            series_counts[(r[0], r[1])] = series_counts.get((r[0], r[1]), 0) + 1

        derived = self._derived_metadata(rows)
        wanted = None if query.limit is None else query.offset + query.limit
        seen: set[tuple[str, ...]] = set()
        found: list[tuple[Dataset, dict[str | int, Any]]] = []
        for row in rows:
            study, series, sop = row[0], row[1], row[2]
            key = {QueryLevel.STUDY: (study,), QueryLevel.SERIES: (study, series)}.get(
                query.level, (study, series, sop))
            if key in seen:
                continue
            st = studies[study]
            extra: dict[str | int, Any] = {
                "ModalitiesInStudy": sorted(st["modalities"]),
                "SOPClassesInStudy": sorted(st["classes"]),
                "NumberOfStudyRelatedSeries": len(st["series"]),
                "NumberOfStudyRelatedInstances": st["count"],
                "NumberOfSeriesRelatedInstances": series_counts[(study, series)],
                "InstanceAvailability": "ONLINE",
            }
            if base is not None:
                levels = ("studies", "series", "instances")
                extra["RetrieveURL"] = base + "".join(
                    f"/{part}/{uid}" for part, uid in zip(levels, key, strict=False))
            view = Dataset.from_json(derived[sop][0])
            for keyword, value in extra.items():
                setattr(view, str(keyword), value)
            if not matches(query, view):
                continue
            seen.add(key)
            found.append((view, extra))
            if wanted is not None and len(found) >= wanted:
                break
        page = found[query.offset:wanted]
        return [to_result(view, query, extra=extra).to_json_dict() for view, extra in page]
