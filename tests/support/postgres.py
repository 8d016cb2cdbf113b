"""A throw-away PostgreSQL server on loopback for tests, from the Debian packages.

``make setup`` installs Debian's ``postgresql`` when ``initdb`` is missing. The server gets a
fresh data folder (``initdb``), listens on 127.0.0.1 on a free port with its socket in the same
folder, runs with fsync off (a test database), and is stopped with its whole process group.

PostgreSQL refuses to run as root. When the tests run as root, the server runs as the
``postgres`` system user that the Debian package creates (``subprocess``'s ``user=``, no shell
``su``), in a folder under the system temporary directory that the user owns.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.s3proxy import free_port

log = logging.getLogger(__name__)

SUPERUSER = "airflow"


def postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``postgres`` (Debian keeps them off PATH).

    Raises:
        FileNotFoundError: when PostgreSQL is not installed (``make setup`` installs it).
    """
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # Debian installs may symlink it into /usr/local/bin
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise FileNotFoundError("PostgreSQL's initdb was not found: run `make setup` (apt-get install postgresql)")
    return Path(candidates[-1]).parent


def _run_as() -> str | None:
    """The user to run the server as: ``postgres`` when we are root, else ourselves (None).

    Raises:
        RuntimeError: when running as root and there is no ``postgres`` user.
    """
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as "
                           "(the Debian postgresql package creates it)") from exc
    return "postgres"


@dataclass
class PostgresServer:
    """A running PostgreSQL server."""

    port: int
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` (psycopg2 driver, trust authentication on loopback)."""
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """libpq connection string of ``database``."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name`` (UTF-8)."""
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\'')
        finally:
            conn.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the process group), SIGKILL if it lingers; remove the data folder."""
        for sig, wait in ((signal.SIGINT, 30.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(timeout: float = 60.0) -> PostgresServer:
    """initdb a fresh cluster and start it on a free loopback port; wait until it accepts connections.

    Raises:
        FileNotFoundError: when PostgreSQL is not installed.
        RuntimeError: when initdb fails or the server does not come up in time.
    """
    bindir = postgres_bin()
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="visearch-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}
    init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                           "-E", "UTF8", "--locale=C", "--no-sync"],
                          env=env, user=user, capture_output=True, text=True, timeout=120, check=False)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
    port = free_port()
    log_path = root / "postgres.log"
    handle = open(log_path, "ab")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=100"],
        env=env, user=user, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = PostgresServer(port=port, root=root, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log_path.read_text(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(f"postgres exited with {process.returncode}: {text}")
        ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER],
                               env=env, capture_output=True, check=False)
        if ready.returncode == 0:
            log.info("postgres on 127.0.0.1:%d (data %s)", port, data)
            return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"postgres did not accept connections within {timeout}s")
