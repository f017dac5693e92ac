"""The make targets' wrapper stops the servers its command left running, and only those."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

from devstack.airflow_env import REPO_ROOT
from devstack.pg import PgCluster


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_with_run_dir_stops_what_a_crashed_command_left_and_spares_other_servers(pg_cluster: PgCluster):
    crashing = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, os.getcwd())
        from devstack.pg import PgCluster
        cluster = PgCluster.create("crashy")
        print(cluster.port, flush=True)
        os._exit(3)  # a crash: no atexit, no teardown, the server stays up
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "with_run_dir.sh"), sys.executable, "-c", crashing],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 3, out.stderr
    port = int(out.stdout.split()[0])
    assert not _answers(port), "the crashed command's server must be stopped by the wrapper"
    assert _answers(pg_cluster.port) and pg_cluster.psql("select 1") == "1", "other servers must survive"


def test_with_run_dir_stops_airflow_processes_whose_home_is_in_the_run_dir():
    """A crashed command's Airflow components (found by AIRFLOW_HOME under the run dir) are stopped too."""
    crashing = textwrap.dedent(
        """
        import os, subprocess, sys, tempfile
        home = tempfile.mkdtemp(prefix="dataeng-airflow-stack-")
        env = dict(os.environ, AIRFLOW_HOME=home)
        # Its own session, as devstack.airflow_stack starts components: not in the wrapper's process group.
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env,
                                start_new_session=True)
        print(proc.pid, flush=True)
        os._exit(3)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "AIRFLOW_HOME")}
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "with_run_dir.sh"), sys.executable, "-c", crashing],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 3, out.stderr
    pid = int(out.stdout.split()[0])
    assert not _alive(pid), "the crashed command's Airflow process must be stopped by the wrapper"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
