"""`healthpipe secure init`: each consumer's folder gets exactly what it needs, nothing else; a second run changes
nothing; the certificate is valid for every host given; the CA's key is written nowhere."""

from pathlib import Path

import pytest
from cryptography import x509

from healthpipe.common.errors import ConfigError
from healthpipe.common.principals import ROLES, USERNAMES
from healthpipe.ops import secure

FOLDERS = ("source", "kafka", "influxdb", "operator", *ROLES)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in FOLDERS:
        (tmp_path / name).mkdir()
    return tmp_path


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_each_consumer_gets_only_its_own_secrets(root):
    secure.init(root, ("kafka", "influxdb", "127.0.0.1"), owners={})
    passwords = {p.name: p.read_bytes() for p in (root / "source" / "passwords").iterdir()}
    assert set(passwords) == {"hp-admin", *USERNAMES.values()}
    assert len(set(passwords.values())) == len(passwords)  # no two principals share a password
    assert set(_files(root / "kafka")) == {"server.pem", "ca.pem", "admin.password"}
    assert set(_files(root / "influxdb")) == {"server.crt", "server.key"}
    assert _files(root / "operator")["kafka.password"] == passwords["hp-admin"]
    for role in ROLES:
        assert _files(root / role) == {"ca.pem": _files(root / "kafka")["ca.pem"],
                                       "kafka.password": passwords[USERNAMES[role]]}, role
        assert (root / role / "kafka.password").stat().st_mode & 0o777 == 0o400


def test_the_certificate_covers_every_host_and_the_ca_key_is_written_nowhere(root):
    secure.init(root, ("kafka", "kafka-2", "influxdb", "127.0.0.1"), owners={})
    cert = x509.load_pem_x509_certificates((root / "influxdb" / "server.crt").read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"kafka", "kafka-2", "influxdb"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    keys = [p for p in root.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    server_key = (root / "influxdb" / "server.key").read_bytes()
    assert all(server_key.strip() in p.read_bytes() for p in keys), keys  # only the server's key, in its copies


def test_a_second_run_changes_no_credential(root):
    secure.init(root, ("kafka",), owners={})
    before = {name: _files(root / name) for name in FOLDERS if name != "source"}
    secure.init(root, ("kafka",), owners={})
    assert before == {name: _files(root / name) for name in FOLDERS if name != "source"}


def test_a_missing_volume_is_named(root):
    (root / "consumer").rmdir()
    with pytest.raises(ConfigError, match="mount the secure-consumer volume"):
        secure.init(root, ("kafka",), owners={})
