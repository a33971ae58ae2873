"""The console: demo, preview, help on every command, and clear errors."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys

import click
import pytest

from newsletter.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(cli)], ids=lambda p: " ".join(p) or "newsletter")
def test_every_command_has_help(run_cli, path):
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert len(result.output.splitlines()) > 3


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "demo" in result.stdout and "subscribers" in result.stdout


def test_demo_from_nothing_writes_real_emails_to_the_outbox(run_cli, tmp_path):
    result = run_cli("demo")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "newsletter.db").exists()
    emls = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(emls) == 4
    recipients = set()
    for path in emls:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(message["To"])
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert recipients == {
        "ada@example.org",
        "grace@example.org",
        "alan@example.org",
        "hedy@example.org",  # an address alone: the trending papers
    }
    html_files = [
        line.strip() for line in result.output.splitlines() if line.strip().endswith(".html")
    ]
    assert html_files and all((tmp_path / "outbox").as_posix() in p for p in html_files)
    assert "195 new" in result.output


def test_demo_twice_sends_nothing_more(run_cli, tmp_path):
    run_cli("demo")
    second = run_cli("demo")
    assert second.exit_code == 0
    assert second.output.count("already sent") == 4
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 4


def test_demo_never_hands_example_addresses_to_a_mail_server(run_cli, tmp_path):
    result = run_cli("demo", env={"NEWSLETTER_TRANSPORT": "smtp://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 4


def test_preview_json_lists_papers_with_scores_and_reasons(run_cli):
    run_cli("ingest", "--sample")
    run_cli("subscribers", "add", "gnn@example.org", "--interests", "graph neural networks")
    result = run_cli("preview", "gnn@example.org", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["subscriber"]["email"] == "gnn@example.org"
    assert 0 < len(data["papers"]) <= 5
    assert set(data["papers"][0]) == {"id", "title", "score", "reason"}
    scores = [p["score"] for p in data["papers"]]
    assert scores == sorted(scores, reverse=True)
    # A preview sends and records nothing: the real send still goes out.
    assert "1 sent" in run_cli("send").output


def test_preview_html_and_eml_to_a_file(run_cli, tmp_path):
    run_cli("ingest", "--sample")
    run_cli("subscribers", "add", "gnn@example.org", "--interests", "graph neural networks")
    assert (
        run_cli("preview", "gnn@example.org", "--format", "html", "--out", "p.html").exit_code == 0
    )
    html = (tmp_path / "p.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'style="' in html  # CSS inlined
    eml = run_cli("preview", "gnn@example.org", "--format", "eml").stdout
    message = email.message_from_string(eml, policy=email.policy.default)
    assert message["To"] == "gnn@example.org"


def test_preview_of_unknown_subscriber_is_a_clear_error(run_cli):
    result = run_cli("preview", "nobody@example.org")
    assert result.exit_code == 1
    assert "no subscriber nobody@example.org" in result.output
    assert "Traceback" not in result.output


def test_unknown_option_names_the_option(run_cli):
    result = run_cli("send", "--frobnicate")
    assert result.exit_code == 2
    assert "--frobnicate" in result.output


def test_send_json_report(run_cli):
    run_cli("ingest", "--sample")
    run_cli("subscribers", "add", "gnn@example.org", "--interests", "graph neural networks")
    data = json.loads(run_cli("send", "--json").stdout)
    assert data["counts"] == {"sent": 1}
    assert data["outcomes"][0]["email"] == "gnn@example.org"
    assert data["outcomes"][0]["message_id"].startswith("<")
