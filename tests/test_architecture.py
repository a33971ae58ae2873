"""The package's layers (``[tool.importlinter]`` in pyproject.toml): every import points
down the pipeline, the ranker does not read the store, only the store imports the database
drivers, and the transports do not read the settings. lint-imports reads the source, it
imports nothing. And no SQL outside ``newsletter/store``: a scan of the source's syntax."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_follow_the_layers() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: SQL in a string: a statement's keywords, in capitals, as the store writes them.
SQL_TEXT = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s+\w+)\b"
)
DRIVERS = {"sqlite3", "sqlite_utils"}
#: What only a database connection (or sqlite-utils' Database) is asked for.
CONNECTION_ATTRIBUTES = {"conn", "execute", "executemany", "executescript", "cursor"}
DATABASE_ATTRIBUTES = {"query", "atomic", "execute", "conn", "table"}


def sql_uses(source: str) -> list[str]:
    """Where ``source`` speaks to a database itself: a driver imported, a connection's method,
    sqlite-utils' ``.db.query``/``.db[table]``, or a string of SQL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [f"{where}: imports {n}" for n in names if (n or "").split(".")[0] in DRIVERS]
        elif isinstance(node, ast.Attribute) and node.attr in CONNECTION_ATTRIBUTES:
            found.append(f"{where}: .{node.attr}")
        elif (
            isinstance(node, ast.Attribute | ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "db"
            and (isinstance(node, ast.Subscript) or node.attr in DATABASE_ATTRIBUTES)
        ):
            found.append(
                f"{where}: .db{'[...]' if isinstance(node, ast.Subscript) else '.' + node.attr}"
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (match := SQL_TEXT.search(node.value))
        ):
            found.append(f"{where}: SQL {match.group(0)[:40]!r}")
    return found


def test_no_sql_outside_the_store() -> None:
    package = ROOT / "newsletter"
    store = package / "store"
    found = {
        str(path.relative_to(ROOT)): uses
        for path in sorted(package.rglob("*.py"))
        if store not in path.parents and (uses := sql_uses(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_sql_scan_sees_what_it_looks_for() -> None:
    source = """
import sqlite3
from sqlite_utils.db import NotFoundError
rows = store.conn.execute("SELECT status FROM deliveries WHERE id = ?", [1])
store.db["papers"].update("x", {})
store.db.query(f"UPDATE deliveries SET next_attempt_at = '{when}'")
store.conn.executemany("DELETE FROM rate_limit_hits WHERE at <= ?", [])
settings.db.parent.mkdir()  # a path, not a database
"""
    flagged = {int(use.split(":")[0].removeprefix("line ")) for use in sql_uses(source)}
    assert flagged == {2, 3, 4, 5, 6, 7}  # every line but the last
