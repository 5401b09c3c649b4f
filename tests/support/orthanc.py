"""Orthanc as a real peer: a fixture factory that runs Orthanc 1.10 with its DICOMweb plugin on loopback.

Orthanc is started by hand (never as the Debian service) through
:class:`wic_conformance.bench.manager.OrthancProcess`, the same helper the
``manager`` benchmark uses, so the suite and the benchmark run Orthanc one way:

* a configuration file written to a fresh tmp folder, with the storage in the
  same folder;
* HTTP on a free loopback port: Orthanc cannot bind port 0, so a port is picked
  by binding a socket to 127.0.0.1:0 and closing it, and the start is retried
  with another port if Orthanc fails to come up;
* the DICOM (DIMSE) server disabled and remote access refused (Orthanc has no
  bind-address option; it answers loopback clients only);
* the DICOMweb plugin at ``/dicom-web/`` with full studies/series metadata,
  plus the GDCM plugin when installed;
* ready when ``GET /system`` answers with this server's name (about 0.1 s);
  stopped with SIGTERM (it takes about 4 s), killed after 10 s.

Orthanc's documented STOW-RS limitation: it accepts only
``multipart/related; type="application/dicom"``; JSON or XML metadata with bulk
data is refused.  Without ``/usr/sbin/Orthanc`` or the DICOMweb plugin, the tests
that need it skip (and fail under ``CI=true``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.peers import require_peer
from wic_conformance.bench.manager import ORTHANC_MISSING, OrthancProcess, orthanc_missing

__all__ = ["make_orthanc", "orthanc"]

MakeOrthanc = Callable[..., OrthancProcess]


@pytest.fixture(scope="session")
def make_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeOrthanc]:
    """Return a factory ``make_orthanc(**extra_config) -> OrthancProcess``; all are stopped at session end.

    Each call starts its own Orthanc with its own storage folder; ``extra_config``
    is merged into the configuration (e.g. ``AuthenticationEnabled``).  The returned
    object has ``url`` (DICOMweb root), ``rest`` (REST base URL), ``upload(part10)``,
    ``add_stow_server(name, url, headers=None)`` and ``stow(name, resources)``.
    """
    started: list[OrthancProcess] = []

    def make(**extra_config: Any) -> OrthancProcess:
        require_peer(orthanc_missing() is None, ORTHANC_MISSING)
        peer = OrthancProcess(tmp_path_factory.mktemp("orthanc"), extra_config=extra_config)
        started.append(peer)
        return peer.start()

    yield make
    for peer in started:
        peer.stop()


@pytest.fixture(scope="session")
def orthanc(make_orthanc: MakeOrthanc) -> OrthancProcess:
    """Return the session's shared Orthanc (give what you store fresh UIDs: the storage is shared)."""
    return make_orthanc()
