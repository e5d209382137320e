"""`tune` on a real PostgreSQL server: two workers share one study, one is killed with kill -9,
and together they finish exactly `--trials` trials.

The server is Debian's `postgresql` package (`.ci/run` installs it where it is missing),
started here in a temporary folder on a free loopback port and stopped afterwards; the driver
is the `postgres` extra (`pip install -e ".[postgres]"`). Without either the test is skipped
with the reason.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from bench.cli import main
from bench.experiments import tuning
from tests import stopping
from test_tuning_workers import start_worker, states, wait_mid_trial

SERVER_USER = "postgres"  # the server refuses to run as root; Debian's package creates this user


def server_binaries() -> str | None:
    """The folder holding initdb, pg_ctl and postgres (Debian keeps them out of PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, os.path.dirname(os.path.realpath(on_path)))
    return next((c for c in candidates if all(os.path.exists(os.path.join(c, b))
                                              for b in ("initdb", "pg_ctl", "postgres"))), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


@pytest.fixture(scope="module")
def postgres_url():
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip('no PostgreSQL driver (pip install -e ".[postgres]")')
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root and no '{SERVER_USER}' user to run the server as")
    folder = tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp")
    if os.geteuid() == 0:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = os.path.join(folder, "data"), os.path.join(folder, "log")
    subprocess.run(as_server_user([f"{binaries}/initdb", "-D", data, "-A", "trust", "-U", "bench",
                                   "--no-sync"]), check=True, capture_output=True, timeout=120)
    for _ in range(5):  # another process may take the free port between the probe and the server's bind
        port = free_port()
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = subprocess.run(as_server_user([f"{binaries}/pg_ctl", "-D", data, "-o", options, "-l", log,
                                                 "-w", "start"]), capture_output=True, timeout=120)
        if started.returncode == 0:
            break
    else:
        raise AssertionError(f"the PostgreSQL server did not start: {Path(log).read_text()[-2000:]}")
    try:
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_server_user([f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


@pytest.mark.slow
def test_two_workers_on_postgres_one_killed_finish_exactly_the_trials(root, postgres_url):
    victim = start_worker(root, postgres_url, trials=4, heartbeat=1, stop_mid_trial=True)
    # the survivor starts once the victim holds a RUNNING trial: started together, a fast survivor
    # could finish all four trials before the victim reached its first (CI saw it: "running up to 0")
    wait_mid_trial(victim, root)
    survivor = start_worker(root, postgres_url, trials=4, heartbeat=1)
    stopping.kill(victim)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    assert "postgresql://bench@127.0.0.1" in err  # the study line names the server (no password)
    study = tuning.open_study(postgres_url, "shared")
    counts = Counter(t.state.name for t in study.trials)
    assert counts["COMPLETE"] + counts["PRUNED"] == 4 and counts["RUNNING"] == 0 == counts["WAITING"]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 1  # the killed worker's trial, failed by the survivor's heartbeat check
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retries) == 1 and retries[0].params == failed[0].params
    assert states(postgres_url) == counts


def test_a_missing_driver_is_one_line_naming_the_package(root, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the driver were not installed
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    for url, package in (("postgresql://u@127.0.0.1:9/db", "psycopg[binary]"),
                         ("postgresql+psycopg2://u@127.0.0.1:9/db", "psycopg2-binary")):
        assert main(["tune", "--method", "SinMoAll", "--storage", url, "--trials", "1", "--quiet",
                     "--results", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: storage") and err.count("\n") == 1, err
        assert f"pip install {package}" in err.replace('"', "")
