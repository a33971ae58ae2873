"""A throwaway PostgreSQL server for the benchmarks: Debian's ``postgresql`` package, an
``initdb`` in a temporary directory on 127.0.0.1 (as the unprivileged user
``newsletter-pg`` when run as root, as the tests do), fsync off.

    python benchmarks/pgserver.py start DIR    # prints the URL of a database "newsletter"
    python benchmarks/pgserver.py stop DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "newsletter-pg"
PASSWORD = "bench-pg-password"


def _as_user(data: Path) -> list[str]:
    if os.getuid() != 0:
        return []
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
    shutil.chown(data, USER)
    return ["runuser", "-u", USER, "--"]


def start(data: Path) -> str:
    """Start a server whose files are in ``data`` (made empty); the URL of its database."""
    data.mkdir(parents=True)
    as_user = _as_user(data)
    password_file = data / "password"
    password_file.write_text(PASSWORD)
    if as_user:
        shutil.chown(password_file, USER)
    cluster = data / "cluster"
    subprocess.run(
        [
            *as_user,
            str(BIN / "initdb"),
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
    options = f"-h 127.0.0.1 -p {port} -k {data} -F -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            str(BIN / "pg_ctl"),
            "-D",
            str(cluster),
            "-l",
            str(data / "log"),
            "-o",
            options,
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    (data / "port").write_text(str(port))
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"


def stop(data: Path) -> None:
    as_user = ["runuser", "-u", USER, "--"] if os.getuid() == 0 else []
    subprocess.run(
        [*as_user, str(BIN / "pg_ctl"), "-D", str(data / "cluster"), "-m", "fast", "stop"],
        capture_output=True,
    )
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.action == "start":
        print(start(args.dir))
    else:
        stop(args.dir)


if __name__ == "__main__":
    main()
