"""TLS to MySQL and Redis, for real: a CA and server certificates made here, a throwaway mariadbd
and redis-server with TLS on, and the service's own settings (``?ssl_ca=`` on ORDERS_DATABASE_URL,
``rediss://...?ssl_ca_certs=`` on ORDERS_REDIS_URL). A verified connection works; a wrong CA and a
host name the certificate does not name fail, with a readiness message that says so."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service import close_app, create_app
from service.config import Settings
from service.invalidation.mysql_source import current_position
from service.orders.database import connect
from tests.support.fixtures import ThrowawayServers
from tests.support.servers import MariaDBServer, free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    cert: Path  # for 127.0.0.1 and localhost
    key: Path
    wrong_name_cert: Path  # for db.example only
    wrong_name_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    path = _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _server(
    directory: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    names: list[x509.GeneralName],
) -> tuple[Path, Path]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = _write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    key_path = _write(
        directory / f"{name}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_path, ca_key, ca = _ca(directory, "orders-test-ca")
    other_ca, _, _ = _ca(directory, "someone-else-ca")
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert, key = _server(directory, "server", ca_key, ca, local)
    wrong_cert, wrong_key = _server(directory, "wrong", ca_key, ca, [x509.DNSName("db.example")])
    return Pki(ca_path, other_ca, cert, key, wrong_cert, wrong_key)


def _tls_mariadb(throwaway: ThrowawayServers, cert: Path, key: Path, ca: Path) -> MariaDBServer:
    return throwaway.mariadb(
        extra_args=(f"--ssl-ca={ca}", f"--ssl-cert={cert}", f"--ssl-key={key}")
    )


@pytest.fixture
def tls_mariadb(throwaway: ThrowawayServers, pki: Pki) -> MariaDBServer:
    server = _tls_mariadb(throwaway, pki.cert, pki.key, pki.ca)
    server.create_database("orders")
    return server


def _url(server: MariaDBServer, query: str) -> str:
    return f"mysql://root@127.0.0.1:{server.port}/orders?{query}"


def _cipher(url: str) -> str:
    url_setting = Settings.from_env({"ORDERS_DATABASE_URL": url}).database_url
    with connect(url_setting) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cursor.fetchone()[1])


def _readiness(database_url: str, cache_prefix: str) -> dict[str, object]:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": database_url,
            "ORDERS_CACHE_PREFIX": cache_prefix,
            "ORDERS_NEAR_CACHE": "false",
        }
    )
    app = create_app(settings)
    try:
        response = app.test_client().get("/readyz")
        return {**response.json, "code": response.status_code}
    finally:
        close_app(app)


def test_a_verified_tls_connection_to_mysql_works(tls_mariadb: MariaDBServer, pki: Pki) -> None:
    assert _cipher(_url(tls_mariadb, f"ssl_ca={pki.ca}")) != ""


def test_the_binlog_connection_uses_tls_too(tls_mariadb: MariaDBServer, pki: Pki) -> None:
    good = Settings.from_env({"ORDERS_DATABASE_URL": _url(tls_mariadb, f"ssl_ca={pki.ca}")})
    assert current_position(good.database_url).log_file.startswith("mysql-bin")
    wrong = Settings.from_env({"ORDERS_DATABASE_URL": _url(tls_mariadb, f"ssl_ca={pki.other_ca}")})
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        current_position(wrong.database_url)


def test_a_wrong_ca_makes_readiness_fail_with_a_clear_message(
    tls_mariadb: MariaDBServer, pki: Pki, cache_prefix: str
) -> None:
    ready = _readiness(_url(tls_mariadb, f"ssl_ca={pki.ca}"), cache_prefix)
    assert ready["code"] == 200
    wrong = _readiness(_url(tls_mariadb, f"ssl_ca={pki.other_ca}"), cache_prefix)
    # Redis still answers, so the pod stays ready (cached pages are served) but says why MySQL
    # is out of reach.
    assert (wrong["code"], wrong["status"]) == (200, "degraded")
    assert "certificate verify failed" in str(wrong["checks"]["mysql"])  # type: ignore[index]


def test_a_host_name_the_certificate_does_not_name_fails_when_verified(
    throwaway: ThrowawayServers, pki: Pki, cache_prefix: str
) -> None:
    server = _tls_mariadb(throwaway, pki.wrong_name_cert, pki.wrong_name_key, pki.ca)
    server.create_database("orders")
    verified = _readiness(_url(server, f"ssl_ca={pki.ca}"), cache_prefix)
    assert (verified["code"], verified["status"]) == (200, "degraded")
    message = str(verified["checks"]["mysql"])  # type: ignore[index]
    assert "127.0.0.1" in message
    assert "certificate verify failed" in message
    relaxed = _url(server, f"ssl_ca={pki.ca}&ssl_verify_identity=false")
    assert _cipher(relaxed) != ""  # the CA is still checked, only the name is not


def _tls_redis(throwaway: ThrowawayServers, cert: Path, key: Path, ca: Path) -> int:
    tls_port = free_port()
    throwaway.redis(
        extra_args=(
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        )
    )  # fmt: skip
    return tls_port


def test_rediss_with_the_ca_works_through_the_service(
    throwaway: ThrowawayServers, pki: Pki, seeded_database_url: str
) -> None:
    tls_port = _tls_redis(throwaway, pki.cert, pki.key, pki.ca)
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": seeded_database_url,
            "ORDERS_REDIS_URL": f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={pki.ca}",
            "ORDERS_CACHE_PREFIX": "tls",
            "ORDERS_NEAR_CACHE": "false",
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/orders/2").headers["X-Cache"] == "MISS"
        assert client.get("/orders/2").headers["X-Cache"] == "HIT"
        assert client.get("/readyz").json["checks"]["redis"] == "ok"
    finally:
        close_app(app)


@pytest.mark.parametrize("case", ["wrong CA", "wrong name"])
def test_rediss_refuses_a_wrong_ca_or_a_wrong_name(
    throwaway: ThrowawayServers, pki: Pki, case: str
) -> None:
    if case == "wrong CA":
        tls_port = _tls_redis(throwaway, pki.cert, pki.key, pki.ca)
        ca = pki.other_ca
    else:
        tls_port = _tls_redis(throwaway, pki.wrong_name_cert, pki.wrong_name_key, pki.ca)
        ca = pki.ca
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
    client = redis.Redis.from_url(url, socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate"):
        client.ping()
    client.close()
