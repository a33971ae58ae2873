"""deploy/: the systemd units pass ``systemd-analyze verify`` and keep the settings the
README's operations section relies on; the environment file example gives settings that a
real send accepts; the container runs the same worker as the unit."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.cli import cli
from newsletter.mail.transport import check_real_send
from newsletter.settings import CONFIG_ENV, SECRET_FIELDS, Settings, env_name, load_settings
from newsletter.transports.smtp import SMTPTransport
from newsletter.web.app import MAX_BODY, WEBHOOK_MAX_BODY

from .conftest import require_tool

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = ["newsletter-worker.service", "newsletter-web.service"]
#: Where the units expect the package (README: "Operations").
INSTALLED = "/opt/newsletter/venv/bin/newsletter"
DATA_DIR = "/var/lib/newsletter"
ENV_FILE = "/etc/newsletter/newsletter.env"


def unit_file(name: str) -> dict[str, dict[str, str]]:
    """A unit file's sections and settings (each of ours is set once)."""
    sections: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert key not in section, f"{name}: {key} is set twice"
        section[key] = value
    return sections


@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify(name, tmp_path):
    """``verify`` wants the ExecStart binary to exist: a copy of the unit points at this
    environment's ``newsletter`` instead of the one installed on a server."""
    analyze = require_tool("systemd-analyze")
    installed_here = Path(sys.executable).with_name("newsletter")
    text = (DEPLOY / name).read_text()
    assert f"ExecStart={INSTALLED} " in text
    unit = tmp_path / name
    unit.write_text(text.replace(INSTALLED, str(installed_here)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # An unknown key or a bad value is only a warning, naming the unit.
    assert name not in result.stderr, result.stderr


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_as_the_newsletter_user_and_writes_only_the_data_dir(name):
    service = unit_file(name)["Service"]
    expected = {
        "User": "newsletter",
        "Group": "newsletter",
        "WorkingDirectory": DATA_DIR,
        "EnvironmentFile": ENV_FILE,
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ReadWritePaths": DATA_DIR,
        "PrivateTmp": "true",
        "ProtectHome": "true",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert unit_file(name)["Install"] == {"WantedBy": "multi-user.target"}


def test_worker_unit_runs_the_worker_and_waits_for_the_message_in_flight():
    service = unit_file("newsletter-worker.service")["Service"]
    program, *args = shlex.split(service["ExecStart"])
    assert program == INSTALLED
    assert args == ["-v", "worker"]  # -v: the worker's INFO lines reach the journal
    assert "worker" in cli.commands
    # On SIGTERM the worker finishes the messages in flight: one SMTP call, or two if the
    # server dropped the connection and the message goes once more, each up to the timeout.
    default_timeout = SMTPTransport.from_url("smtp://localhost").timeout
    assert int(service["TimeoutStopSec"]) >= 2 * default_timeout + 30  # seconds


def test_web_unit_serves_on_loopback_behind_nginx():
    service = unit_file("newsletter-web.service")["Service"]
    program, *args = shlex.split(service["ExecStart"])
    assert (program, args) == (INSTALLED, ["serve", "--host", "127.0.0.1", "--port", "8000"])
    assert "proxy_pass http://127.0.0.1:8000;" in (DEPLOY / "nginx.conf").read_text()
    # A confirmation email may be on its way when the app is stopped.
    default_timeout = SMTPTransport.from_url("smtp://localhost").timeout
    assert int(service["TimeoutStopSec"]) >= default_timeout


def nginx_body_limits() -> dict[str, int]:
    """``client_max_body_size`` in deploy/nginx.conf, in bytes: the server's (key "") and
    each location's that sets its own, by the location's path."""
    text = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
    units = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}
    limits, location = {}, ""
    for line in text.splitlines():
        if opened := re.match(r"\s*location\s+(\S+)\s*\{", line):
            location = opened.group(1)
        elif line.strip() == "}":
            location = ""
        elif size := re.match(r"\s*client_max_body_size\s+(\d+)([kKmMgG]?);", line):
            limits[location] = int(size.group(1)) * units[size.group(2).lower()]
    return limits


def test_nginx_lets_through_the_bodies_the_app_accepts_and_no_larger():
    """Issue 12: ``client_max_body_size 64k`` applied to the webhooks too, and refused a
    SendGrid batch (72 KB) before it reached the app."""
    assert nginx_body_limits() == {"": MAX_BODY, "/webhooks/": WEBHOOK_MAX_BODY}
    text = (DEPLOY / "nginx.conf").read_text()
    webhooks = text.split("location /webhooks/ {", 1)[1].split("}", 1)[0]
    assert "proxy_pass http://127.0.0.1:8000;" in webhooks
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in webhooks


def env_example() -> tuple[dict[str, str], set[str]]:
    """The settings of deploy/newsletter.env.example, read as systemd reads an
    EnvironmentFile, and every variable it names (commented out or not)."""
    values, named = {}, set()
    for line in (DEPLOY / "newsletter.env.example").read_text().splitlines():
        line = line.strip()
        setting = line.removeprefix("#")
        if setting.startswith("NEWSLETTER_") and "=" in setting:
            named.add(setting.partition("=")[0])
        if line.startswith("NEWSLETTER_"):
            key, _, value = line.partition("=")
            values[key] = value.strip()
    return values, named


def test_env_example_names_every_secret_and_nothing_unknown():
    _, named = env_example()
    secrets = {env_name(field) for field in SECRET_FIELDS}
    assert secrets <= named
    known = {env_name(f) for f in Settings.__dataclass_fields__} | {CONFIG_ENV}
    assert named <= known, named - known
    assert {"NEWSLETTER_FROM", "NEWSLETTER_TRANSPORT", CONFIG_ENV} <= named


def test_env_example_gives_settings_a_real_send_accepts():
    values, _ = env_example()
    assert values[CONFIG_ENV] == "/etc/newsletter/newsletter.toml"
    values[CONFIG_ENV] = str(DEPLOY / "newsletter.example.toml")
    settings = load_settings(environ=values)
    check_real_send(settings)  # a real From: no quotes, nothing cut at a space
    assert settings.from_address == "Daily Papers <papers@example.org>"
    assert settings.sender_domain == "example.org"
    assert settings.secret_key and settings.smtp_password
    assert settings.transport == values["NEWSLETTER_TRANSPORT"]


def test_container_runs_the_same_worker_as_the_unit_as_a_user_with_a_data_volume():
    instructions: dict[str, str] = {}
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            keyword, _, rest = line.partition(" ")
            instructions.setdefault(keyword, rest)
    assert instructions["FROM"] == "python:3.11-slim"
    assert instructions["USER"] == "newsletter"
    assert json.loads(instructions["VOLUME"]) == [DATA_DIR]
    assert instructions["WORKDIR"] == DATA_DIR
    command = json.loads(instructions["ENTRYPOINT"]) + json.loads(instructions["CMD"])
    program, *args = shlex.split(unit_file("newsletter-worker.service")["Service"]["ExecStart"])
    assert command == [Path(program).name, *args]
