"""A TLS Image Manager: reached with a CA bundle, with the insecure flag, and refused without either."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wic_conformance.actors.manager import ImageManager, ManagerConfig
from wic_conformance.model.fixtures import FixtureIndex
from wic_conformance.plans.model import Case, CaseOutcome, Encoding, Expectation, Payload, Target
from wic_conformance.plans.runner import run_case

INDEX = FixtureIndex.load(Path(__file__).resolve().parents[2] / "fixtures")
CASE = Case(id="tls", title="PS3.10 over TLS", plan="test", requirements=("STOW-RESP-001",), options=(),
            payload=Payload(encoding=Encoding.PART10, fixtures=("part10/vl-photographic",)),
            expect=Expectation(status=(200,), stored=True), checks=("stow",))


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_manager(tmp_path: Path) -> Iterator[tuple[ImageManager, Path]]:
    cert, key = _self_signed(tmp_path)
    im = ImageManager(ManagerConfig(data_dir=tmp_path / "data", validate_iod=False))
    im.start(ssl_certfile=str(cert), ssl_keyfile=str(key))
    try:
        assert im.url.startswith("https://127.0.0.1:")
        yield im, cert
    finally:
        im.stop()


class TestTls:
    def test_with_a_ca_bundle(self, tls_manager: tuple[ImageManager, Path]) -> None:
        im, cert = tls_manager
        result = run_case(CASE, Target(url=im.url, verify=str(cert)), index=INDEX)
        assert result.outcome is CaseOutcome.PASSED, result.message

    def test_insecure(self, tls_manager: tuple[ImageManager, Path]) -> None:
        im, _cert = tls_manager
        result = run_case(CASE, Target(url=im.url, verify=False), index=INDEX)
        assert result.outcome is CaseOutcome.PASSED, result.message

    def test_untrusted_certificate_is_one_clear_error(self, tls_manager: tuple[ImageManager, Path]) -> None:
        im, _cert = tls_manager
        result = run_case(CASE, Target(url=im.url), index=INDEX)
        assert result.outcome is CaseOutcome.ERROR
        assert result.message.startswith("target unreachable:") and "\n" not in result.message.strip()
