"""Throwaway local PostgreSQL clusters: initdb into a temp dir, a free port, loopback only.

Used by the test harness, the demo and the benchmarks. When the process runs as root the server
is started as the ``postgres`` user (PostgreSQL refuses to run as root). Every cluster started
here is registered for stopping at interpreter exit, so a crashed test or a Ctrl-C leaves no
server running.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
_RUNNING: list[PgCluster] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def as_postgres(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so that it runs as the ``postgres`` OS user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else cmd


def chown_postgres(path: Path) -> None:
    """Give ``path`` to the postgres OS user when we are root."""
    if _is_root():
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


@dataclass
class PgCluster:
    """One PostgreSQL server in a temporary data directory."""

    name: str = "pg"
    port: int = field(default_factory=free_port)
    base_dir: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"dataeng-{self.name}-"))
            os.chmod(self.base_dir, 0o755)
            chown_postgres(self.base_dir)
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self.socket_dir = self.base_dir

    # -- lifecycle -------------------------------------------------------------------------------
    def init(self, extra_args: list[str] | None = None) -> PgCluster:
        """Run initdb (trust auth on loopback)."""
        subprocess.run(
            as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                         "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", *(extra_args or [])]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        return self

    def _conf(self) -> dict[str, str]:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "hot_standby": "on",
            "log_min_messages": "warning",
        }
        conf.update(self.settings)
        return conf

    def write_conf(self) -> None:
        """Append our settings to postgresql.conf (later lines win)."""
        lines = [f"{k} = {v}" for k, v in self._conf().items()]
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write("\n# dataeng test settings\n" + "\n".join(lines) + "\n")
        with open(self.data_dir / "pg_hba.conf", "a") as fh:
            fh.write("host replication all 127.0.0.1/32 trust\n")

    def start(self, timeout: float = 60) -> PgCluster:
        """Start the server and wait until it accepts connections."""
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                         "-w", "-t", str(int(timeout)), "start"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._owner_pid = os.getpid()
        if self not in _RUNNING:
            _RUNNING.append(self)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (no error when it is not running)."""
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )
        if self in _RUNNING:
            _RUNNING.remove(self)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash)."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop("immediate")
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @classmethod
    def create(cls, name: str = "pg", **kwargs) -> PgCluster:
        """initdb + configure + start, in one call."""
        cluster = cls(name=name, **kwargs)
        cluster.init()
        cluster.write_conf()
        return cluster.start()

    def make_standby(self, name: str = "standby") -> PgCluster:
        """A hot standby of this cluster (``pg_basebackup -R``), started, on its own port."""
        standby = PgCluster(name=name)
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_basebackup"), "-h", self.host, "-p", str(self.port),
                         "-U", SUPERUSER, "-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        standby.write_conf()
        return standby.start()

    # -- access ----------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, **extra: str) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={dbname}", f"user={user}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql and return its unaligned output."""
        out = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(dbname),
             "-c", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def create_database(self, dbname: str) -> str:
        self.psql(f'CREATE DATABASE "{dbname}"')
        return dbname

    def drop_database(self, dbname: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@contextlib.contextmanager
def running_cluster(name: str = "pg", **kwargs) -> Iterator[PgCluster]:
    """A started cluster that is always destroyed on exit."""
    cluster = PgCluster.create(name=name, **kwargs)
    try:
        yield cluster
    finally:
        cluster.destroy()


def stop_all() -> None:
    """Stop every cluster this process started (atexit and signal handlers call this); not those of the
    parent of a forked child, which inherits the list."""
    for cluster in list(_RUNNING):
        if getattr(cluster, "_owner_pid", None) == os.getpid():
            cluster.destroy()


atexit.register(stop_all)
