"""A real PostgreSQL server for tests (Debian's ``postgresql`` package), in a temporary folder
on a free loopback port, with a password (scram) on TCP.

    with PostgresServer.start(tmp) as pg:
        pg.env()   # DAGSTER_PG_* for deploy/dagster.postgres.yaml

``initdb`` refuses to run as root: as root, every server command runs as the ``postgres`` user
(``runuser``), in a folder that user owns; as anyone else, as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.server import free_port

SERVICE_USER = "postgres"
DATABASE = "dagster"


def server_bin() -> Path:
    """The folder of initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(versions[-1]).parent


class PostgresServer:
    def __init__(self, folder: Path, port: int, password: str):
        self.folder, self.port, self.password = folder, port, password
        self.data, self.log = folder / "data", folder / "postgres.log"
        self.bin = server_bin()

    @classmethod
    def start(cls) -> PostgresServer:
        folder = Path(tempfile.mkdtemp(prefix="bw-postgres-"))
        server = cls(folder, free_port(), secrets.token_hex(12))
        server._init_and_start()
        return server

    def _as_owner(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        command = [*argv]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *argv]
        return subprocess.run(command, check=True, capture_output=True, text=True,
                              timeout=120, cwd=self.folder, **kw)

    def _init_and_start(self) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVICE_USER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", SERVICE_USER,
                       "--pwfile", str(password_file), "--auth-local=trust",
                       "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8")
        password_file.unlink()
        # Unix socket in our folder (not /var/run/postgresql); TCP on loopback only.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                       "-o", options, "-w", "-t", "60", "start")
        self._as_owner(str(self.bin / "createdb"), "-h", str(self.folder), "-p", str(self.port),
                       "-U", SERVICE_USER, DATABASE)

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.postgres.yaml reads."""
        return {"DAGSTER_PG_USERNAME": SERVICE_USER, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_DB": DATABASE}

    def stop(self) -> None:
        if self.data.exists():
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                           "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
