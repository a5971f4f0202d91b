"""The vehicle's CA and the cab server's certificate (agent/cab/tls.py): made once, private
keys 0600, a server certificate that chains to the CA for the listen address, issued again
from the same key (the tablet's pin holds) when the names change or it nears expiry."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509

from agent.cab.tls import RENEW_BEFORE_DAYS, SERVER_DAYS, CabFiles, ensure, spki_pin

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def files(tmp_path) -> CabFiles:
    return CabFiles(tmp_path / "ca.pem", tmp_path / "ca.key", tmp_path / "cab.pem",
                    tmp_path / "cab.key")


def certs(path):
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_made_once_and_chained(tmp_path):
    f = files(tmp_path)
    assert ensure(f, "van-1", ("10.42.0.1", "cab.local"), NOW) == [
        "CA", "server key", "server certificate"]
    assert f.ca_key.stat().st_mode & 0o777 == 0o600 and f.key.stat().st_mode & 0o777 == 0o600
    server, ca = certs(f.cert)  # the chain: server then CA
    [ca_alone] = certs(f.ca_cert)
    assert ca == ca_alone and ca.extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.42.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["cab.local"]
    assert server.not_valid_after_utc - NOW <= dt.timedelta(days=SERVER_DAYS)
    assert ensure(f, "van-1", ("10.42.0.1", "cab.local"), NOW) == [], "nothing to do"


def test_renewed_from_the_same_key_so_the_pin_holds(tmp_path):
    f = files(tmp_path)
    ensure(f, "van-1", ("10.42.0.1",), NOW)
    pin, first = spki_pin(f.cert.read_bytes()), certs(f.cert)[0]
    assert ensure(f, "van-1", ("10.42.0.2",), NOW) == ["server certificate"]
    assert spki_pin(f.cert.read_bytes()) == pin and certs(f.cert)[0] != first
    later = NOW + dt.timedelta(days=SERVER_DAYS - RENEW_BEFORE_DAYS + 1)
    assert ensure(f, "van-1", ("10.42.0.2",), later) == ["server certificate"]
    assert spki_pin(f.cert.read_bytes()) == pin


def test_a_lost_server_key_makes_a_new_pin(tmp_path):
    f = files(tmp_path)
    ensure(f, "van-1", ("10.42.0.1",), NOW)
    pin = spki_pin(f.cert.read_bytes())
    f.key.unlink()
    assert ensure(f, "van-1", ("10.42.0.1",), NOW) == ["server key", "server certificate"]
    assert spki_pin(f.cert.read_bytes()) != pin
