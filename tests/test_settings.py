"""Settings: defaults < TOML file < NEWSLETTER_* environment < explicit overrides (CLI flags),
and the refusals that keep secrets and typos out of config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter.settings import SettingsError, load_settings
from newsletter.urls import redact_url


def _toml(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment():
    settings = load_settings(environ={})

    assert settings.db == Path("newsletter.db")
    assert settings.transport == "outbox:./outbox"
    assert settings.papers_per_email == 5
    assert settings.secret_key == ""


def test_newsletter_toml_in_working_directory_is_read(isolated: Path):
    _toml(
        isolated / "newsletter.toml",
        'db = "papers.db"\ntransport = "smtp://mail.example.org:587"\npapers_per_email = 3\n',
    )

    settings = load_settings(environ={})

    assert settings.db == Path("papers.db")
    assert settings.transport == "smtp://mail.example.org:587"
    assert settings.papers_per_email == 3
    assert isinstance(settings.papers_per_email, int)


def test_newsletter_table_in_toml_is_read(isolated: Path):
    _toml(isolated / "newsletter.toml", '[newsletter]\nmin_score = 0.2\ntimezone = "Asia/Tokyo"\n')

    settings = load_settings(environ={})

    assert settings.min_score == 0.2
    assert settings.timezone == "Asia/Tokyo"


def test_newsletter_config_variable_points_to_another_file(isolated: Path):
    _toml(isolated / "newsletter.toml", 'db = "from-cwd.db"\n')
    other = _toml(isolated / "elsewhere.toml", 'db = "from-elsewhere.db"\n')

    settings = load_settings(environ={"NEWSLETTER_CONFIG": str(other)})

    assert settings.db == Path("from-elsewhere.db")


def test_missing_newsletter_config_file_is_an_error(isolated: Path):
    with pytest.raises(SettingsError, match=r"missing\.toml"):
        load_settings(environ={"NEWSLETTER_CONFIG": str(isolated / "missing.toml")})


def test_missing_explicit_config_path_is_an_error(isolated: Path):
    with pytest.raises(SettingsError, match=r"gone\.toml"):
        load_settings(environ={}, config_path=isolated / "gone.toml")


@pytest.mark.parametrize(
    ("variable", "field", "value", "expected"),
    [
        ("NEWSLETTER_DB", "db", "env.db", Path("env.db")),
        ("NEWSLETTER_TRANSPORT", "transport", "smtp://env.example.org:25", None),
        ("NEWSLETTER_FROM", "from_address", "Env <env@example.org>", None),
        ("NEWSLETTER_BASE_URL", "base_url", "https://env.example.org", None),
    ],
)
def test_environment_overrides_toml(isolated: Path, variable, field, value, expected):
    _toml(
        isolated / "newsletter.toml",
        'db = "toml.db"\ntransport = "outbox:./toml-outbox"\n'
        'from_address = "Toml <toml@example.org>"\nbase_url = "https://toml.example.org"\n',
    )

    settings = load_settings(environ={variable: value})

    assert getattr(settings, field) == (expected if expected is not None else value)
    # the other TOML values still apply
    assert settings.db == (Path("env.db") if field == "db" else Path("toml.db"))


def test_environment_values_are_converted_to_the_field_type():
    settings = load_settings(
        environ={"NEWSLETTER_PAPERS_PER_EMAIL": "8", "NEWSLETTER_MIN_SCORE": "0.5"}
    )

    assert settings.papers_per_email == 8
    assert settings.min_score == 0.5
    assert (
        load_settings(environ={"NEWSLETTER_MAX_RESPONSE_BYTES": "2048"}).max_response_bytes == 2048
    )


def test_explicit_overrides_beat_environment_and_toml(isolated: Path):
    _toml(isolated / "newsletter.toml", 'db = "toml.db"\ntransport = "outbox:./toml"\n')
    environ = {"NEWSLETTER_DB": "env.db", "NEWSLETTER_TRANSPORT": "outbox:./env"}

    settings = load_settings(environ=environ, db=Path("flag.db"), transport="outbox:./flag")

    assert settings.db == Path("flag.db")
    assert settings.transport == "outbox:./flag"


def test_absent_overrides_do_not_mask_the_environment():
    settings = load_settings(environ={"NEWSLETTER_DB": "env.db"}, db=None, transport=None)

    assert settings.db == Path("env.db")
    assert settings.transport == "outbox:./outbox"


def test_secret_key_comes_from_environment_and_is_not_in_repr():
    settings = load_settings(environ={"NEWSLETTER_SECRET_KEY": "s3cr3t-value"})

    assert settings.secret_key == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)


def test_a_password_in_the_transport_url_is_not_in_repr():
    settings = load_settings(
        environ={"NEWSLETTER_TRANSPORT": "smtp://mailer:S3cr%2FetPass@127.0.0.1:2525"}
    )

    assert "S3cr" not in repr(settings)


@pytest.mark.parametrize(
    ("key", "variable"),
    [("secret_key", "NEWSLETTER_SECRET_KEY"), ("smtp_password", "NEWSLETTER_SMTP_PASSWORD")],
)
def test_toml_with_a_secret_is_refused_naming_the_variable(isolated: Path, key, variable):
    _toml(isolated / "newsletter.toml", f'db = "x.db"\n{key} = "hunter2"\n')

    with pytest.raises(SettingsError) as caught:
        load_settings(environ={})

    assert variable in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_outside_the_newsletter_table_is_not_silently_accepted(isolated: Path):
    _toml(isolated / "newsletter.toml", 'secret_key = "hunter2"\n\n[newsletter]\ndb = "x.db"\n')

    with pytest.raises(SettingsError, match="NEWSLETTER_SECRET_KEY"):
        load_settings(environ={})


@pytest.mark.parametrize("password", ["hunter2", "hun/ter2", "hun?ter2", "hun#ter2", "hun[ter2"])
def test_transport_url_with_password_in_toml_is_refused(isolated: Path, password: str):
    """Also a password that breaks the URL apart (urlsplit sees no password in it)."""
    url = f"smtp://me:{password}@mail.example.org:587"
    _toml(isolated / "newsletter.toml", f'transport = "{url}"\n')

    with pytest.raises(SettingsError) as caught:
        load_settings(environ={})

    assert "NEWSLETTER_SMTP_PASSWORD" in str(caught.value)
    assert "hun" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postmark", "sendgrid", "resend"])
def test_relay_token_in_toml_is_refused(isolated: Path, scheme: str):
    _toml(isolated / "newsletter.toml", f'transport = "{scheme}://tok-3n-secret@"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={})
    assert "NEWSLETTER_RELAY_TOKEN" in str(caught.value)
    assert "tok-3n-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://mailer:S3cr/etPass@127.0.0.1:2525", "smtp://mailer:***@127.0.0.1:2525"),
        ("smtps://mailer:a@b#c?d@mail.example.org", "smtps://mailer:***@mail.example.org"),
        ("smtp://:S3cret@127.0.0.1", "smtp://:***@127.0.0.1"),
        ("smtp://mailer@127.0.0.1:2525", "smtp://mailer@127.0.0.1:2525"),
        ("postmark://tok/en@?timeout=5", "postmark://***@?timeout=5"),
        ("outbox:./outbox", "outbox:./outbox"),
    ],
)
def test_a_transport_url_is_shown_without_its_password_or_token(url: str, shown: str):
    assert redact_url(url) == shown


def test_transport_url_with_user_but_no_password_in_toml_is_accepted(isolated: Path):
    _toml(isolated / "newsletter.toml", 'transport = "smtp://me@mail.example.org:587"\n')

    assert load_settings(environ={}).transport == "smtp://me@mail.example.org:587"


def test_unknown_key_in_toml_is_refused_naming_it(isolated: Path):
    _toml(isolated / "newsletter.toml", 'db = "x.db"\npapers_per_emial = 3\n')

    with pytest.raises(SettingsError, match="papers_per_emial"):
        load_settings(environ={})


def test_unknown_explicit_override_is_refused():
    with pytest.raises(SettingsError, match="colour"):
        load_settings(environ={}, colour="blue")


def test_bad_type_in_toml_is_a_clear_settings_error(isolated: Path):
    _toml(isolated / "newsletter.toml", 'papers_per_email = "many"\n')

    with pytest.raises(SettingsError) as caught:
        load_settings(environ={})

    assert "papers_per_email" in str(caught.value)
    assert "many" in str(caught.value)


def test_bad_type_in_environment_is_a_clear_settings_error():
    with pytest.raises(SettingsError, match="min_score"):
        load_settings(environ={"NEWSLETTER_MIN_SCORE": "high"})


def test_invalid_toml_is_a_settings_error_naming_the_file(isolated: Path):
    _toml(isolated / "newsletter.toml", "db = \n")

    with pytest.raises(SettingsError, match=r"newsletter\.toml"):
        load_settings(environ={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("papers_per_email = 2.7", "papers_per_email"),
        ("papers_per_email = true", "papers_per_email"),
        ("delivery_hour = 99", "delivery_hour must be 0-23"),
        ("papers_per_email = -1", "papers_per_email must be 1-50"),
        ('timezone = "Mars/Olympus"', "Mars/Olympus"),
        ('timezone = "Europe"', "timezone 'Europe' is not an IANA name"),
        ("max_response_bytes = 0", "max_response_bytes must be at least 1024"),
    ],
)
def test_settings_of_the_wrong_type_or_range_are_refused(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={}, config_path=path)


# -- settings that become headers --------------------------------------------------------------

BCC = "\r\nBcc: evil@attacker.example"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NEWSLETTER_FROM", "Daily Papers <papers@example.org>" + BCC),
        ("NEWSLETTER_FROM", "Daily Papers <papers@example.org>\nBcc: evil@attacker.example"),
        ("NEWSLETTER_FROM", "Daily\x00 Papers <papers@example.org>"),
        ("NEWSLETTER_FROM", "Daily\x85Papers <papers@example.org>"),
        ("NEWSLETTER_REPLY_TO", "editor@example.org" + BCC),
        ("NEWSLETTER_BASE_URL", "https://papers.example.org/" + BCC),
        ("NEWSLETTER_BASE_URL", "https://papers.example.org/ x"),
        ("NEWSLETTER_DKIM_DOMAIN", "example.org" + BCC),
    ],
)
def test_a_header_setting_with_a_line_break_or_control_character_is_refused(variable, value):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value})
    message = str(caught.value)
    assert variable in message and "must be one line of text" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NEWSLETTER_FROM", "not an address"),
        ("NEWSLETTER_FROM", "papers@"),
        ("NEWSLETTER_FROM", "Daily Papers <papers@example.org"),
        ("NEWSLETTER_FROM", "a@example.org, b@example.org"),
        ("NEWSLETTER_REPLY_TO", "editor@"),
    ],
)
def test_a_from_or_reply_to_that_is_not_an_address_is_refused(variable, value):
    with pytest.raises(SettingsError, match=f"{variable}.* is not .*address"):
        load_settings(environ={variable: value})


def test_header_settings_lose_the_whitespace_around_them_a_crlf_env_file_leaves():
    settings = load_settings(
        environ={
            "NEWSLETTER_FROM": " Daily Papers Inc. <papers@example.org>\r",
            "NEWSLETTER_REPLY_TO": "Editor <editor@example.org>, help@example.org\r",
            "NEWSLETTER_BASE_URL": "https://papers.example.org\r\n",
        }
    )
    assert settings.from_address == "Daily Papers Inc. <papers@example.org>"
    assert settings.reply_to == "Editor <editor@example.org>, help@example.org"
    assert settings.base_url == "https://papers.example.org"


def test_sender_identity_may_have_lines_but_no_other_control_character():
    lines = "Daily Papers\r\n1 Example Street\nExample City"
    assert load_settings(environ={"NEWSLETTER_SENDER_IDENTITY": lines}).sender_identity == lines
    with pytest.raises(SettingsError, match="sender_identity"):
        load_settings(environ={"NEWSLETTER_SENDER_IDENTITY": "Daily\x00 Papers"})


def test_cli_refuses_a_from_address_with_a_bcc_header_without_traceback(run_cli):
    result = run_cli(
        "send", "--dry-run", env={"NEWSLETTER_FROM": "Daily Papers <papers@example.org>" + BCC}
    )
    assert result.exit_code == 1
    assert "NEWSLETTER_FROM" in result.stderr and "Traceback" not in result.output


# -- through the command ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Europe", "US", "x" * 300])
def test_a_timezone_folder_in_the_environment_is_a_clear_error(run_cli, name):
    result = run_cli("subscribers", "list", env={"NEWSLETTER_TIMEZONE": name})

    assert result.exit_code == 1
    assert "is not an IANA name" in result.stderr
    assert "Traceback" not in result.output


def test_cli_db_flag_selects_the_database_and_beats_environment(run_cli, isolated: Path):
    added = run_cli(
        "--db", "flag.db", "subscribers", "add", "ada@example.org", env={"NEWSLETTER_DB": "env.db"}
    )
    assert added.exit_code == 0, added.output

    via_flag = run_cli("--db", "flag.db", "subscribers", "list", "--json")
    via_env = run_cli("subscribers", "list", "--json", env={"NEWSLETTER_DB": "env.db"})

    assert [s["email"] for s in json.loads(via_flag.stdout)] == ["ada@example.org"]
    assert json.loads(via_env.stdout) == []
    assert (isolated / "flag.db").exists()
    assert not (isolated / "newsletter.db").exists()


def test_cli_refuses_a_config_file_with_a_secret_without_traceback(run_cli, isolated: Path):
    _toml(isolated / "newsletter.toml", 'secret_key = "hunter2"\n')

    result = run_cli("subscribers", "list")

    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.output
