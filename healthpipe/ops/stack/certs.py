"""The secured stack's certificates: a CA made on first `stack up --secure`, and one server certificate for
127.0.0.1/localhost that Kafka and InfluxDB both present. Kept in .stack/secure/ (keys mode 600), never committed.

Clients trust the CA file (HEALTHPIPE_KAFKA__SECURITY__CA_FILE, HEALTHPIPE_LOAD__INFLUXDB__CA_FILE); a second,
unrelated CA (`untrusted_ca`) is there for the tests that must see an unknown certificate refused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from healthpipe.common.errors import StackError


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what clients trust
    server_cert: Path  # the server's certificate followed by the CA's (the chain)
    server_key: Path  # PKCS#8, unencrypted, mode 600
    server_pem: Path  # key then chain in one file: Kafka's PEM keystore


def _crypto():  # type: ignore[no-untyped-def,unused-ignore]
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise StackError("the secured stack makes its certificates with the `cryptography` package: make install") \
            from None
    return x509, hashes, serialization, ec, NameOID


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    path.write_bytes(data)
    path.chmod(0o600 if secret else 0o644)


def _make_ca(folder: Path, name: str):  # type: ignore[no-untyped-def,unused-ignore]
    x509, hashes, serialization, ec, NameOID = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _subject_alt_names(hosts: tuple[str, ...]):  # type: ignore[no-untyped-def,unused-ignore]
    x509 = _crypto()[0]
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def certificates(folder: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
                 ca_name: str = "healthpipe native stack CA") -> Certificates:
    """The CA and a server certificate for `hosts` (names or IP addresses) in `folder`, made once (an existing set
    is kept: clients trust it)."""
    out = Certificates(folder / "ca.pem", folder / "server.crt", folder / "server.key", folder / "server.pem")
    if all(p.exists() for p in (out.ca, out.server_cert, out.server_key, out.server_pem)):
        return out
    x509, hashes, serialization, ec, NameOID = _crypto()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_cert, ca_key = _make_ca(folder, ca_name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=397))
            .add_extension(_subject_alt_names(hosts), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(out.server_key, key_pem, secret=True)
    _write(out.server_cert, chain)
    _write(out.server_pem, key_pem + chain, secret=True)
    return out


def untrusted_ca(folder: Path) -> Path:
    """A CA that signed nothing of the stack's: a client trusting only it must refuse the stack's certificates."""
    path = folder / "untrusted" / "ca.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _make_ca(path.parent, "not the healthpipe CA")
    return path
