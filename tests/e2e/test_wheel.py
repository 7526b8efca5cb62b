"""The installable package: ``python -m build`` makes a wheel and an sdist that carry the
console, the migrations and ``py.typed``; the wheel, installed (not editable) into a fresh
venv, bootstraps a store, serves, and issues a token.

It builds from a copy of the sources (the tree stays clean) and installs the wheel's
dependencies from the package index (pip's cache makes a second run quicker): 1-3 minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import base_env, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin@acme-corp.test"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"
# What an installed server cannot run without, beside the Python modules.
CARRIED = (
    "centrali/py.typed",
    "centrali/store/migrations/env.py",
    "centrali/store/migrations/script.py.mako",
    "centrali/store/migrations/versions/0001_initial_schema.py",
    "centrali/web/console/index.html",
    "centrali/web/console/app.js",
    "centrali/web/console/style.css",
)


def run(argv: list[str], *, timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a copy of the sources: the sdist, and the wheel built from it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    out = tmp / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], timeout=600)
    return out


def test_the_wheel_and_the_sdist_carry_console_migrations_and_py_typed(dist: Path) -> None:
    (wheel,) = dist.glob("centrali-*.whl")
    (sdist,) = dist.glob("centrali-*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
        entry_points = zf.read(next(n for n in in_wheel if n.endswith("entry_points.txt")))
    with tarfile.open(sdist) as tf:
        in_sdist = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    for path in CARRIED:
        assert path in in_wheel, path
        assert f"src/{path}" in in_sdist, path
    versions = (ROOT / "src/centrali/store/migrations/versions").glob("*.py")
    for migration in versions:
        assert f"centrali/store/migrations/versions/{migration.name}" in in_wheel
    assert b"centrali = centrali.cli:main" in entry_points
    assert not [n for n in in_wheel if n.startswith("tests/")]


def test_the_installed_wheel_serves_bootstraps_and_issues_a_token(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("centrali-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python, centrali = venv / "bin" / "python", venv / "bin" / "centrali"
    env = base_env()
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        timeout=600,
        env=env,
    )
    # Installed, not linked to this checkout.
    where = run([str(python), "-c", "import centrali; print(centrali.__file__)"], timeout=60)
    assert str(venv) in where.stdout and str(ROOT / "src") not in where.stdout
    assert run([str(centrali), "--version"], timeout=60).stdout == "centrali 0.1.0\n"

    workdir = tmp_path / "work"
    workdir.mkdir()
    store = base_env(CENTRALI_DATA_DIR=str(workdir / "data"))
    run(
        [str(centrali), "bootstrap", "--workspace", "acme-corp", "--admin", ADMIN],
        timeout=120,
        env=store,
        cwd=workdir,
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(centrali), "serve", "--port", str(port)],
        env=store,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, trust_env=False, timeout=10.0) as http:
            _wait_ready(http, server, tmp_path / "serve.log")
            assert http.get("/console").status_code == 200  # the console assets are there
            token = run(
                [str(centrali), "user", "token", ADMIN, "--workspace", "acme-corp"],
                timeout=120,
                env=store,
                cwd=workdir,
            )
            assert f"signed for issuer {base} (the store's)" in token.stderr
            headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
            r = http.post(ACCOUNTS, headers=headers, json={"name": "From the wheel"})
            assert r.status_code == 201, r.text
            account = r.json()
            r = http.post(
                "/oidc/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": account["clientId"],
                    "client_secret": account["clientSecret"],
                },
            )
            assert r.status_code == 200, r.text
            assert r.json()["token_type"] == "Bearer"
        doctor = run([str(centrali), "doctor"], timeout=120, env=store, cwd=workdir)
        assert "FAIL" not in doctor.stdout
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)
        log.close()


def _wait_ready(http: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"centrali serve exited {server.returncode}:\n{log.read_text()}")
        try:
            if http.get("/.well-known/openid-configuration").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"centrali serve not ready in 60 s:\n{log.read_text()}")
