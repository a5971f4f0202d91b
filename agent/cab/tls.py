"""The vehicle's own CA and the cab server's certificate (docs/driver.md, "Why TLS, and which").

`ensure(files, names, now)` makes what is missing on first start: a per-vehicle CA (EC P-256,
self-signed, CA:TRUE pathlen 0) and a server key with a certificate signed by it for the
listen address and names; it issues the server certificate again (same key, so an SPKI pin
holds) when the names change or it is close to expiry. `spki_pin()` is what a tablet pins.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The CA outlives the tablets it is installed on.
CA_DAYS = 3650
# The longest validity browsers accept for a certificate under a locally installed CA (Apple's
# and Chrome's 825-day rule); renewed automatically from the same key.
SERVER_DAYS = 825
# A server certificate with less than this left is issued again at start.
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class CabFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool) -> None:
    """Atomically, a private key 0600 from its creation."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _new_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    _write(path, key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), private=True)
    return key


def _load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _alt_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName))


def ensure(files: CabFiles, vehicle: str, names: tuple[str, ...],
           now: dt.datetime) -> list[str]:
    """Make the CA and the server certificate where missing or stale; what was made."""
    made = []
    if files.ca_key.exists() and files.ca_cert.exists():
        ca_key = _load_key(files.ca_key)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    else:
        ca_key = _new_key(files.ca_key)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                f"fleet-agent cab CA {vehicle}"[:64])])
        ca_cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                       ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        made.append("CA")
    key = _load_key(files.key) if files.key.exists() else None
    if key is None:
        key = _new_key(files.key)
        made.append("server key")
    if files.cert.exists() and not made:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        fresh = (cert.not_valid_after_utc - now > dt.timedelta(days=RENEW_BEFORE_DAYS)
                 and _names_of(cert) == set(names)
                 and cert.public_key().public_numbers() == key.public_key().public_numbers())
        if fresh:
            return made
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        f"fleet-agent cab {vehicle}"[:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS),
                                 ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM)
           + ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    made.append("server certificate")
    return made


def spki_pin(cert_pem: bytes) -> str:
    """base64 SHA-256 of the (first) certificate's SubjectPublicKeyInfo: what a tablet pins."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
