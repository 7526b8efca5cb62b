"""Operations of a real ``centrali serve`` (contract "Operations and security"): JSON log
lines with request ids, metrics summed over ``--workers``, TLS, the plain-HTTP warning,
and graceful shutdown on SIGTERM.

Starting a server costs seconds (imports, migrations), so every server these tests need is
started at once when the module's first test asks for one, each on its own copy of one
prepared store; each test then waits only for its own server.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from centrali.config import Settings
from centrali.services import service_accounts
from centrali.services.context import Actor
from centrali.services.workspaces import create_workspace
from centrali.store.db import Database
from centrali.web.app import prepare_store
from tests.e2e.conftest import CENTRALI, Server, base_env, free_port, stop

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 90.0  # every server of the module starts at once, on a busy machine maybe
EXIT_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
BANNER = "centrali: "


@dataclass(frozen=True)
class Account:
    client_id: str
    client_secret: str

    def form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


@dataclass
class Spec:
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    tls: bool = False


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and localhost, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def prepared_store(directory: Path) -> Account:
    """A migrated store with a key, workspace acme-corp and one service account."""
    db = Database(f"sqlite:///{directory / 'centrali.db'}")
    try:
        prepare_store(db)
        create_workspace(db, slug="acme-corp")
        view = service_accounts.create(
            db, workspace_slug="acme-corp", actor=Actor("e2e-ops"), name="Ops Client"
        )
    finally:
        db.dispose()
    assert view.client_secret is not None
    return Account(view.client_id, view.client_secret)


class Fleet:
    """The module's servers, all started together; ``get(name)`` waits for one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert, self.key = self_signed_cert(root)
        template = root / "template"
        template.mkdir()
        self.account = prepared_store(template)
        self.specs = {
            "json": Spec(("--host", "127.0.0.1")),
            "text": Spec(("--host", "0.0.0.0"), {"CENTRALI_LOG_FORMAT": "text"}),
            "tls": Spec(
                ("--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key)), tls=True
            ),
            "workers": Spec(("--workers", "2")),
            "graceful": Spec(("--host", "127.0.0.1")),
        }
        self.servers: dict[str, Server] = {}
        self.ready: set[str] = set()
        self.taken: set[str] = set()
        self.spawned = 0
        self.missing_cert: subprocess.Popen[str] | None = None

    def start(self) -> None:
        for name in self.specs:
            self.servers[name] = self._spawn(name)
        # A CLI failure, started now too so its interpreter start overlaps the others'.
        self.missing_cert = subprocess.Popen(
            [
                str(CENTRALI),
                "serve",
                "--port",
                str(free_port()),
                "--ssl-certfile",
                str(self.root / "no-such-cert.pem"),
            ],
            env=base_env(CENTRALI_DATA_DIR=str(self.root / "missing-cert-data")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _spawn(self, name: str) -> Server:
        spec = self.specs[name]
        self.spawned += 1
        data = self.root / name / f"data-{self.spawned}"
        shutil.copytree(self.root / "template", data)
        env = base_env(CENTRALI_DATA_DIR=str(data), **spec.env)
        port = free_port()
        log = self.root / name / f"serve-{port}.log"
        with log.open("wb") as out:
            # Its own session: stop() can reach the workers too.
            proc = subprocess.Popen(
                [str(CENTRALI), "serve", "--port", str(port), *spec.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Server(proc=proc, port=port, env=env, log=log)

    def url(self, name: str) -> str:
        server = self.servers[name]
        scheme = "https" if self.specs[name].tls else "http"
        return f"{scheme}://127.0.0.1:{server.port}"

    def http(self, name: str) -> httpx.Client:
        verify: ssl.SSLContext | bool = True
        if self.specs[name].tls:
            verify = ssl.create_default_context(cafile=str(self.cert))
        return httpx.Client(
            base_url=self.url(name), verify=verify, trust_env=False, timeout=HTTP_TIMEOUT
        )

    def take(self, name: str) -> Server:
        """A server the test will stop: later tests asking for it get a fresh one."""
        server = self.get(name)
        self.taken.add(name)
        return server

    def get(self, name: str) -> Server:
        if name in self.taken:  # stopped by an earlier test: start another
            self.taken.discard(name)
            self.ready.discard(name)
            stop(self.servers[name])
            self.servers[name] = self._spawn(name)
        if name in self.ready:
            return self.servers[name]
        deadline = time.monotonic() + READY_TIMEOUT
        for _ in range(3):  # a lost race for a free port: another port
            server = self.servers[name]
            with self.http(name) as http:
                while time.monotonic() < deadline and server.proc.poll() is None:
                    try:
                        if http.get("/healthz", timeout=2.0).status_code == 200:
                            self.ready.add(name)
                            return server
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
            if server.proc.poll() is None:
                pytest.fail(f"{name}: not ready after {READY_TIMEOUT} s:\n{server.log_text()}")
            if "address already in use" not in server.log_text().lower():
                pytest.fail(f"{name}: exited with {server.proc.returncode}:\n{server.log_text()}")
            self.servers[name] = self._spawn(name)
        pytest.fail(f"{name}: no free port in 3 attempts")

    def close(self) -> None:
        for server in self.servers.values():
            stop(server)
        if self.missing_cert is not None:
            if self.missing_cert.poll() is None:
                self.missing_cert.kill()
            self.missing_cert.communicate()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    servers = Fleet(tmp_path_factory.mktemp("ops-serve"))
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def log_lines_after_banner(server: Server) -> list[str]:
    """The server's output lines after its ``centrali: …`` start-up lines."""
    lines = server.log_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"{BANNER}serving"))
    rest = lines[first:]
    while rest and rest[0].startswith(BANNER):
        rest = rest[1:]
    return [line for line in rest if line.strip()]


def wait_for_log(server: Server, *needles: str, timeout: float = 10.0) -> str:
    """The log once it holds every needle (lines are written after the answer is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.log_text()
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


# --- logs ------------------------------------------------------------------------------------


def test_logs_are_json_lines_with_request_ids(fleet: Fleet) -> None:
    server = fleet.get("json")
    account = fleet.account
    answers: list[tuple[httpx.Response, str, str, int]] = []
    with fleet.http("json") as http:
        r = http.get("/healthz", headers={"X-Request-Id": "e2e-given-id-1"})
        assert r.headers["x-request-id"] == "e2e-given-id-1"
        answers.append((r, "GET", "/healthz", 200))
        r = http.get("/readyz", params={"token": "query-value-never-logged"})
        answers.append((r, "GET", "/readyz", 200))
        r = http.post("/oidc/token", data=account.form())
        token = r.json()["access_token"]
        answers.append((r, "POST", "/oidc/token", 200))
        r = http.post("/oidc/token", data={**account.form(), "client_secret": "sk_wrong"})
        answers.append((r, "POST", "/oidc/token", 401))
        r = http.get("/workspace/acme-corp/api/v1/records/31337")
        answers.append((r, "GET", "/workspace/acme-corp/api/v1/records/31337", 401))
    for r, _, _, status in answers:
        assert r.status_code == status, r.text
    rids = [r.headers["x-request-id"] for r, *_ in answers]
    wait_for_log(server, *(f'"requestId": "{rid}"' for rid in rids))

    records = []
    for line in log_lines_after_banner(server):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n{server.log_text()}")
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    access = {r["requestId"]: r for r in records if r["logger"] == "centrali.access"}
    for (_, method, path, status), rid in zip(answers, rids, strict=True):
        entry = access.get(rid)
        assert entry is not None, (rid, sorted(access))
        assert (entry["method"], entry["path"], entry["status"]) == (method, path, status), entry
        assert isinstance(entry["durationMs"], int | float) and entry["durationMs"] >= 0, entry
    text = server.log_text()
    for secret in (account.client_secret, "sk_wrong", token, "query-value-never-logged"):
        assert secret not in text


def test_text_log_format_gives_plain_lines(fleet: Fleet) -> None:
    server = fleet.get("text")
    with fleet.http("text") as http:
        r = http.get("/healthz", headers={"X-Request-Id": "e2e-text-id-7"})
        assert r.status_code == 200
    wait_for_log(server, "e2e-text-id-7")
    lines = log_lines_after_banner(server)
    assert lines
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        assert not isinstance(parsed, dict), f"a JSON line in text format: {line!r}"
    access = [line for line in lines if "e2e-text-id-7" in line]
    assert len(access) == 1, lines
    assert "GET /healthz 200" in access[0]


def other_warnings(server: Server) -> list[str]:
    """The start-up warnings but the master key's (these servers run without one)."""
    return [
        line
        for line in server.log_text().splitlines()
        if "WARNING" in line and "CENTRALI_MASTER_KEY is not set" not in line
    ]


def test_plain_http_warning_on_a_public_address(fleet: Fleet) -> None:
    server = fleet.get("text")  # --host 0.0.0.0, no issuer set, no certificate
    warnings = other_warnings(server)
    assert len(warnings) == 1, server.log_text()
    assert warnings[0].startswith(BANNER)
    assert "plain HTTP" in warnings[0] and "0.0.0.0" in warnings[0]


def test_no_plain_http_warning_on_loopback(fleet: Fleet) -> None:
    server = fleet.get("json")  # --host 127.0.0.1
    assert other_warnings(server) == [], server.log_text()
    assert "plain HTTP" not in server.log_text()


# --- metrics with workers --------------------------------------------------------------------


def issued_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "centrali_tokens_issued_total" and sample.labels == {
                "grant_type": "client_credentials"
            }:
                return sample.value
    return 0.0


def test_metrics_sum_over_workers(fleet: Fleet) -> None:
    fleet.get("workers")
    for _ in range(20):
        with fleet.http("workers") as http:  # a new connection: either worker may answer
            r = http.post("/oidc/token", data=fleet.account.form())
            assert r.status_code == 200, r.text
    totals = []
    for _ in range(8):
        with fleet.http("workers") as http:
            r = http.get("/metrics")
            assert r.status_code == 200, r.text
            totals.append(issued_total(r.text))
    assert totals == [20.0] * 8, totals


def test_settings_flags_reach_the_workers(fleet: Fleet) -> None:
    """Every worker answers with the supervisor's settings (here: the JSON log format)."""
    server = fleet.get("workers")
    with fleet.http("workers") as http:
        rids = [http.get("/healthz").headers["x-request-id"] for _ in range(3)]
    wait_for_log(server, *rids)
    for line in log_lines_after_banner(server):
        try:
            record: Any = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
        assert isinstance(record, dict), line


# --- TLS -------------------------------------------------------------------------------------


def test_tls_serves_tokens_over_https_with_hsts(fleet: Fleet) -> None:
    server = fleet.get("tls")
    with fleet.http("tls") as http:
        r = http.get("/healthz")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        discovery = http.get("/.well-known/openid-configuration").json()
        assert discovery["issuer"] == f"https://127.0.0.1:{server.port}"
        r = http.post("/oidc/token", data=fleet.account.form())
        assert r.status_code == 200, r.text
        assert "strict-transport-security" in r.headers
        claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
        assert claims["iss"] == discovery["issuer"]
    with (
        httpx.Client(trust_env=False, timeout=HTTP_TIMEOUT) as plain,
        pytest.raises(httpx.TransportError),
    ):
        plain.get(f"{fleet.url('tls')}/healthz")  # not trusted without the certificate


def test_missing_certificate_file_exits_2_with_one_line(fleet: Fleet) -> None:
    proc = fleet.missing_cert
    assert proc is not None
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("serve with a missing certificate did not exit")
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "ssl_certfile" in lines[0] and "no-such-cert.pem" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "extra", "warned"),
    [
        ("127.0.0.1", {}, False),
        ("localhost", {}, False),
        ("::1", {}, False),
        ("0.0.0.0", {}, True),
        ("10.1.2.3", {}, True),
        ("0.0.0.0", {"issuer": "https://auth.example"}, False),  # TLS ends at a proxy
        ("0.0.0.0", {"ssl_certfile": "cert.pem"}, False),
    ],
)
def test_plain_http_warning_rules(host: str, extra: dict[str, Any], warned: bool) -> None:
    from centrali.cli.serve import plain_http_warning

    values: dict[str, Any] = {"issuer": "", "ssl_certfile": "", **extra}  # not this shell's
    warning = plain_http_warning(Settings(host=host, data_dir=Path("."), **values))
    assert (warning is not None) == warned, warning


# --- shutdown --------------------------------------------------------------------------------


def read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_refuses_connections(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    pytest.fail(f"still accepting connections {timeout} s after SIGTERM")


def test_sigterm_lets_an_in_flight_request_finish(fleet: Fleet) -> None:
    server = fleet.take("graceful")
    body = urlencode(fleet.account.form()).encode()
    half = len(body) // 2
    head = (
        f"POST /oidc/token HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(head + body[:half])
        time.sleep(0.5)  # the server has the headers and waits for the rest
        os.kill(server.proc.pid, signal.SIGTERM)
        assert "Shutting down" in wait_for_log(server, "Shutting down"), server.log_text()
        assert_refuses_connections(server.port)  # no new connections once it is stopping
        sock.sendall(body[half:])
        status, headers, payload = read_http_response(sock)
    assert status == 200, payload
    assert json.loads(payload)["token_type"] == "Bearer"
    try:
        server.proc.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_TIMEOUT} s after SIGTERM:\n{server.log_text()}")


def test_sigterm_exit_status_is_0(fleet: Fleet) -> None:
    server = fleet.take("json")
    os.kill(server.proc.pid, signal.SIGTERM)
    status = server.proc.wait(EXIT_TIMEOUT)
    assert status == 0, f"exit status {status}"


def worker_pids(supervisor: int) -> list[int]:
    children = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc_dir / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (proc_dir / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmdline:
            children.append(int(proc_dir.name))
    return children


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies excepted)."""
    members = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc_dir / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(proc_dir.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_to_the_supervisor_stops_the_workers(fleet: Fleet) -> None:
    server = fleet.take("workers")
    supervisor = server.proc.pid
    deadline = time.monotonic() + 20
    while len(worker_pids(supervisor)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = worker_pids(supervisor)
    assert len(workers) == 2, server.log_text()
    os.kill(supervisor, signal.SIGTERM)  # the supervisor alone, not its group
    try:
        status = server.proc.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"supervisor still running after SIGTERM:\n{server.log_text()}")
    assert status == 0, server.log_text()
    deadline = time.monotonic() + 5
    while group_members(supervisor) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(supervisor) == [], "orphan processes after the supervisor stopped"
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or pid not in group_members(supervisor)
