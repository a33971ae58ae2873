"""A throwaway PostgreSQL server on loopback: Debian's ``postgresql`` package, an ``initdb``
in a directory of its own on 127.0.0.1 (as the unprivileged user ``newsletter-pg`` when run
as root: the server refuses root), fsync off. The tests' session server
(``conftest.postgres_server``) and the benchmarks' both start here; from the command line:

    python -m tests.pgserver start DIR    # prints the URL of its database "postgres"
    python -m tests.pgserver stop DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
INITDB, PG_CTL = BIN / "initdb", BIN / "pg_ctl"
USER = "newsletter-pg"
PASSWORD = "test-pg-password"


def url(port: int, database: str = "postgres", password: str = PASSWORD) -> str:
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}"


def _as_user(data: Path) -> list[str]:
    """The command prefix that runs the server's programs as ``USER`` (created if need be)
    when this runs as root, with ``data`` made theirs; nothing otherwise."""
    if os.getuid() != 0:
        return []
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ],
            check=True,
        )
    shutil.chown(data, USER)
    return ["runuser", "-u", USER, "--"]


def start(data: Path, max_connections: int = 300) -> int:
    """Start a server whose files are in ``data`` (an empty directory, made if missing; not
    under a directory of root's that ``USER`` cannot reach); its port."""
    data.mkdir(parents=True, exist_ok=True)
    as_user = _as_user(data)
    password_file = data / "password"
    password_file.write_text(PASSWORD)
    if as_user:
        shutil.chown(password_file, USER)
    cluster = data / "cluster"
    subprocess.run(
        [
            *as_user,
            str(INITDB),
            "-D",
            str(cluster),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-h 127.0.0.1 -p {port} -k {data} -F -c max_connections={max_connections}"
    log = data / "server.log"
    subprocess.run(
        [*as_user, str(PG_CTL), "-D", str(cluster), "-l", str(log), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    return port


def stop(data: Path) -> None:
    """Stop the server of ``data`` and remove its files."""
    as_user = ["runuser", "-u", USER, "--"] if os.getuid() == 0 else []
    subprocess.run(
        [*as_user, str(PG_CTL), "-D", str(data / "cluster"), "-m", "immediate", "stop"],
        capture_output=True,
    )
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.action == "start":
        print(url(start(args.dir)))
    else:
        stop(args.dir)


if __name__ == "__main__":
    main()
