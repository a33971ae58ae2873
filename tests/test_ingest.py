"""Ingest: the bundled sample page, JSON Lines, idempotent re-ingest, per-record errors,
stable paper ids, and the ``newsletter ingest`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from newsletter.sources.sample_page import parse_sample_page
from newsletter.store import Store, open_store
from newsletter.store.ingest import (
    IngestError,
    ingest_path,
    ingest_text,
    sample_papers_path,
    store_records,
)

from .conftest import make_paper, write_jsonl

pytestmark = pytest.mark.both_stores

FIRST_SAMPLE_TITLE = (
    "Multi-index Based Solution Theory to the Φ^4 Equation in the Full Subcritical Regime"
)
SAMPLE_PAPER_COUNT = 195


def _record(n: int, **fields) -> dict:
    record = {
        "id": f"2501.{n:05d}",
        "title": f"Spectral methods for graphs, part {n}",
        "abstract": f"We study spectral graph methods, case {n}, and prove bounds.",
    }
    record.update(fields)
    return record


def _line_of(errors: list[str], number: int) -> list[str]:
    """The errors that point at ``line NUMBER`` (and not, say, line NUMBER0)."""
    return [e for e in errors if re.search(rf"\bline {number}\b", e)]


# -- the bundled sample page ------------------------------------------------------------------


def test_sample_page_parses_to_all_papers_with_subscribe_prefix_stripped():
    text = sample_papers_path().read_text(encoding="utf-8")
    records = list(parse_sample_page(text))

    papers = [r for r in records if hasattr(r, "title")]
    assert len(records) == len(papers), "the sample page should parse without errors"
    assert len(papers) == SAMPLE_PAPER_COUNT
    assert papers[0].title == FIRST_SAMPLE_TITLE
    assert not any(p.title.startswith("Subscribe") for p in papers)
    assert not any(p.title.startswith("Get trending papers") for p in papers)
    assert all(p.abstract and len(p.abstract) > len(p.title) for p in papers)
    assert len({p.id for p in papers}) == SAMPLE_PAPER_COUNT


def test_ingesting_sample_page_stores_every_paper_once(store: Store):
    report = ingest_path(store, sample_papers_path())

    assert (report.new, report.updated, report.unchanged, report.skipped) == (
        SAMPLE_PAPER_COUNT,
        0,
        0,
        0,
    )
    assert report.errors == []
    assert store.count("papers") == SAMPLE_PAPER_COUNT
    stored_titles = {p.title for p in store.recent_papers(1000)}
    assert FIRST_SAMPLE_TITLE in stored_titles


def test_reingesting_same_file_counts_unchanged_and_adds_no_rows(store: Store):
    ingest_path(store, sample_papers_path())
    first_seen = {p.id: p.first_seen_at for p in store.recent_papers(1000)}

    again = ingest_path(store, sample_papers_path())

    assert (again.new, again.updated, again.unchanged) == (0, 0, SAMPLE_PAPER_COUNT)
    assert store.count("papers") == SAMPLE_PAPER_COUNT
    assert {p.id: p.first_seen_at for p in store.recent_papers(1000)} == first_seen


def test_sample_page_title_without_abstract_is_reported_by_line_and_others_kept(
    store: Store, tmp_path: Path
):
    lines = sample_papers_path().read_text(encoding="utf-8").splitlines()
    title_index = lines.index(next(line for line in lines if line.startswith("Subscribe"))) + 20
    missing_title = lines[title_index]
    next_title = lines[title_index + 2]
    assert len(missing_title) < 200 and len(next_title) < 200, "should point at title lines"
    del lines[title_index + 1]  # the abstract of that title
    page = tmp_path / "page.txt"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = ingest_path(store, page)

    title_line_number = title_index + 1
    assert report.skipped == 1
    assert len(report.errors) == 1
    assert _line_of(report.errors, title_line_number)
    assert missing_title[:40] in report.errors[0]
    assert report.new == SAMPLE_PAPER_COUNT - 1
    stored_titles = {p.title for p in store.recent_papers(1000)}
    assert missing_title not in stored_titles
    # pairing resumed with the next title: it kept its own abstract
    assert next_title in stored_titles
    following = next(p for p in store.recent_papers(1000) if p.title == next_title)
    assert following.abstract == lines[title_index + 2]


# -- re-ingest and updates --------------------------------------------------------------------


def test_reingesting_changed_record_updates_it_and_keeps_first_seen(store: Store, tmp_path: Path):
    path = write_jsonl(tmp_path / "papers.jsonl", [_record(1), _record(2)])
    ingest_path(store, path)
    # pretend the paper was first seen long ago, so a reset would be visible
    store.db["papers"].update("2501.00001", {"first_seen_at": "2020-01-01T00:00:00.000000+00:00"})

    changed = _record(1, abstract="A revised abstract: we now also cover directed graphs.")
    write_jsonl(path, [changed, _record(2)])
    report = ingest_path(store, path)

    assert (report.new, report.updated, report.unchanged) == (0, 1, 1)
    assert store.count("papers") == 2
    paper = store.get_paper("2501.00001")
    assert paper.abstract == changed["abstract"]
    assert paper.first_seen_at == "2020-01-01T00:00:00.000000+00:00"


def test_reingest_without_optional_fields_keeps_stored_values(store: Store, tmp_path: Path):
    full = _record(1, authors=["Ada Lovelace"], url="https://arxiv.org/abs/2501.00001")
    ingest_path(store, write_jsonl(tmp_path / "a.jsonl", [full]))

    report = ingest_path(store, write_jsonl(tmp_path / "b.jsonl", [_record(1)]))

    assert report.new == 0
    paper = store.get_paper("2501.00001")
    assert paper.authors == ["Ada Lovelace"]
    assert paper.url == "https://arxiv.org/abs/2501.00001"


# -- JSON Lines: bad records ------------------------------------------------------------------


def test_bad_jsonl_records_are_reported_by_line_and_good_ones_stored(store: Store, tmp_path: Path):
    path = write_jsonl(
        tmp_path / "papers.jsonl",
        [
            _record(1),  # line 1
            '{"id": "2501.00002", "title": "Broken", ',  # line 2: malformed JSON
            {"id": "2501.00003", "title": "No abstract here"},  # line 3
            "[1, 2, 3]",  # line 4: not an object
            _record(5, published="last tuesday"),  # line 5
            _record(6, upvotes=-3),  # line 6
            _record(7),  # line 7
        ],
    )

    report = ingest_path(store, path)

    assert report.new == 2
    assert report.skipped == 5
    assert len(report.errors) == 5
    expected = {2: "json", 3: "abstract", 4: "object", 5: "published", 6: "upvotes"}
    for number, hint in expected.items():
        matching = _line_of(report.errors, number)
        assert len(matching) == 1, f"line {number} should be reported once: {report.errors}"
        assert hint in matching[0].lower()
    assert not _line_of(report.errors, 1) and not _line_of(report.errors, 7)
    assert store.get_paper("2501.00001") is not None
    assert store.get_paper("2501.00007") is not None
    assert store.count("papers") == 2


def test_blank_lines_in_jsonl_are_ignored_but_line_numbers_stay_true(store: Store):
    text = json.dumps(_record(1)) + "\n\n" + '{"title": "x", "abstract": ' + "\n"

    report = ingest_text(store, text, "jsonl")

    assert report.new == 1
    assert len(report.errors) == 1 and _line_of(report.errors, 3)


def test_summary_is_accepted_in_place_of_abstract(store: Store, tmp_path: Path):
    record = _record(1)
    summary = record.pop("abstract")
    record["summary"] = summary

    report = ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [record]))

    assert (report.new, report.skipped) == (1, 0)
    assert store.get_paper("2501.00001").abstract == summary


def test_published_time_is_stored_in_utc(store: Store, tmp_path: Path):
    record = _record(1, published="2025-08-19T12:30:00+02:00")

    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [record]))

    assert store.get_paper("2501.00001").published_at.startswith("2025-08-19T10:30:00")
    assert store.get_paper("2501.00001").published_at.endswith("+00:00")


# -- stable ids -------------------------------------------------------------------------------


def _without_id(title: str) -> dict:
    return {"title": title, "abstract": f"An abstract for {title}, which is long enough."}


def test_paper_without_id_gets_stable_title_id_across_runs(tmp_path: Path):
    ids = []
    for run in range(2):
        with open_store(tmp_path / f"run{run}.db") as store:
            path = write_jsonl(tmp_path / f"run{run}.jsonl", [_without_id("Deep Sets Revisited")])
            ingest_path(store, path)
            ids.append([p.id for p in store.recent_papers(10)])

    assert ids[0] == ids[1]
    assert len(ids[0]) == 1 and ids[0][0].startswith("title-")


def test_trivial_title_variants_map_to_the_same_paper(store: Store, tmp_path: Path):
    ingest_path(
        store, write_jsonl(tmp_path / "a.jsonl", [_without_id("Graph Neural Networks: A Survey")])
    )
    first_id = store.recent_papers(10)[0].id

    report = ingest_path(
        store,
        write_jsonl(tmp_path / "b.jsonl", [_without_id("graph neural networks -- a survey!")]),
    )

    assert report.new == 0
    assert store.count("papers") == 1
    assert store.recent_papers(10)[0].id == first_id


def test_different_titles_without_id_get_different_ids(store: Store, tmp_path: Path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [_without_id("Graph Neural Networks: A Survey"), _without_id("Graph Kernels: A Survey")],
    )

    report = ingest_path(store, path)

    assert report.new == 2
    assert store.count("papers") == 2


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("2508.13426v2", "2508.13426"),
        ("arXiv:2508.13426v1", "2508.13426"),
        ("https://arxiv.org/abs/2508.13426v3", "2508.13426"),
        ("astro-ph/0601001v1", "astro-ph/0601001"),
        ("2508.13426", "2508.13426"),
    ],
)
def test_arxiv_ids_are_stored_without_version(store: Store, tmp_path: Path, raw, stored):
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [_record(1, id=raw)]))

    assert store.get_paper(stored) is not None
    assert [p.id for p in store.recent_papers(10)] == [stored]


def test_versions_of_one_arxiv_paper_share_one_row(store: Store, tmp_path: Path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            _record(1, id="2508.13426v1"),
            _record(1, id="2508.13426v2", abstract="The second version's abstract, revised."),
        ],
    )

    report = ingest_path(store, path)

    assert (report.new, report.updated) == (1, 1)
    assert store.count("papers") == 1
    assert store.get_paper("2508.13426").abstract == "The second version's abstract, revised."


def test_missing_input_file_is_an_ingest_error(store: Store, tmp_path: Path):
    with pytest.raises(IngestError, match=r"nope\.jsonl"):
        ingest_path(store, tmp_path / "nope.jsonl")


# -- the command ------------------------------------------------------------------------------


def test_cli_ingest_json_prints_counts_and_errors(run_cli, tmp_path: Path):
    path = write_jsonl(tmp_path / "p.jsonl", [_record(1), "not json", _record(3)])

    result = run_cli("ingest", str(path), "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"new", "updated", "skipped", "errors"} <= set(summary)
    assert (summary["new"], summary["updated"], summary["skipped"]) == (2, 0, 1)
    assert len(summary["errors"]) == 1 and _line_of(summary["errors"], 2)

    again = json.loads(run_cli("ingest", str(path), "--json").stdout)
    assert (again["new"], again["updated"]) == (0, 0)


def test_cli_ingest_sample_writes_to_the_configured_database(run_cli, tmp_path: Path):
    result = run_cli("--db", str(tmp_path / "custom.db"), "ingest", "--sample", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == SAMPLE_PAPER_COUNT
    with open_store(tmp_path / "custom.db") as store:
        assert store.count("papers") == SAMPLE_PAPER_COUNT


def test_cli_ingest_missing_file_is_a_clear_error_with_exit_1(run_cli):
    result = run_cli("ingest", "does-not-exist.jsonl")

    assert result.exit_code == 1
    assert "does-not-exist.jsonl" in result.stderr
    assert "Error" in result.stderr
    assert "Traceback" not in result.output


def test_cli_ingest_unknown_option_exits_2_naming_it(run_cli):
    result = run_cli("ingest", "--bogus")

    assert result.exit_code == 2
    assert "--bogus" in result.stderr


def test_paper_first_keyed_by_title_takes_its_arxiv_id_when_one_arrives(store, settings, tmp_path):
    """The sample page has no ids; the same paper from arXiv later must stay one row, and a
    delivery that already sent it must still know it was sent."""
    from datetime import date

    from newsletter.sending.delivery import send_edition
    from newsletter.sending.ledger import Ledger
    from newsletter.subscribers.profiles import add_subscriber

    title = "Spectral graph neural networks with diffusion"
    ingest_path(
        store,
        write_jsonl(tmp_path / "a.jsonl", [{"title": title, "abstract": "Graph neural networks."}]),
    )
    add_subscriber(store, settings, "gnn@example.org", interests="graph neural networks")
    assert send_edition(store, settings, date.today()).counts == {"sent": 1}

    record = {
        "id": "2501.01234v3",
        "title": title.upper(),
        "abstract": "Graph neural networks.",
        "categories": ["cs.LG"],
    }
    report = ingest_path(store, write_jsonl(tmp_path / "b.jsonl", [record]))

    assert (report.new, report.updated) == (0, 1)
    assert store.count("papers") == 1
    assert store.get_paper("2501.01234").categories == ["cs.LG"]
    delivery = Ledger(store).get(date.today(), store.get_subscriber("gnn@example.org").id)
    assert delivery.paper_ids == ["2501.01234"]
    assert delivery.picks[0]["id"] == "2501.01234"


def test_a_paper_without_id_arriving_after_its_arxiv_record_merges_into_it(store, tmp_path):
    title = "Spectral graph neural networks with diffusion"
    ingest_path(
        store,
        write_jsonl(
            tmp_path / "a.jsonl", [{"id": "2501.01234", "title": title, "abstract": "GNNs."}]
        ),
    )
    report = ingest_path(
        store,
        write_jsonl(
            tmp_path / "b.jsonl", [{"title": title.lower(), "abstract": "GNNs.", "upvotes": 9}]
        ),
    )
    assert (report.new, report.updated) == (0, 1)
    assert store.count("papers") == 1
    assert store.get_paper("2501.01234").upvotes == 9


# -- hostile records ----------------------------------------------------------------------


def test_hostile_jsonl_records_cost_only_their_line(store: Store, tmp_path: Path):
    path = write_jsonl(
        tmp_path / "hostile.jsonl",
        [
            *[_record(n) for n in range(1, 601)],  # lines 1-600: more than one batch
            "[" * 100_000 + "]" * 100_000,  # line 601: RecursionError in the parser
            '{"title": "t", "abstract": "a", "upvotes": 1' + "0" * 5000 + "}",  # 602
            _record(603, upvotes=10**30),  # overflows an SQLite integer
            _record(604, published="0001-01-01T00:00:00+05:00"),  # before year 1 in UTC
            _record(605, published="9999-12-31T23:00:00-05:00"),  # after 9999 in UTC
            _record(606, published="1970-01-01T00:00:00Z"),  # before arXiv
            _record(607, upvotes=True),
            _record(608),
        ],
    )

    report = ingest_path(store, path)

    assert report.new == 601 and store.count("papers") == 601
    assert report.skipped == 7 and not report.failures
    for number in range(601, 608):
        assert len(_line_of(report.errors, number)) == 1, (number, report.errors)
    assert store.get_paper("2501.00001") is not None
    assert store.get_paper("2501.00600") is not None
    assert store.get_paper("2501.00608") is not None
    assert all(len(e) < 300 for e in report.errors)  # a huge value is not copied whole


def test_a_date_more_than_two_days_ahead_is_refused(store: Store):
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    text = "\n".join(json.dumps(_record(n, published=t)) for n, t in [(1, soon), (2, later)])

    report = ingest_text(store, text, "jsonl")

    assert report.new == 1 and store.get_paper("2501.00001") is not None
    assert len(_line_of(report.errors, 2)) == 1 and "future" in report.errors[0]
    assert report.newest and report.newest < later  # the newest mark never jumps ahead


def test_a_paper_the_store_cannot_take_is_reported_and_its_batch_kept(store: Store):
    papers = [make_paper(n) for n in range(1, 4)]
    papers[1].upvotes = 10**30  # bypassing the parser, which refuses it

    report = store_records(store, papers, "test")

    assert (report.new, report.skipped) == (2, 1)
    assert report.errors and "2501.00002" in report.errors[0]
    assert store.get_paper("2501.00001") and store.get_paper("2501.00003")


def test_a_reader_that_breaks_down_keeps_what_came_before(store: Store):
    def records():
        yield make_paper(1)
        raise RuntimeError("the parser has a bug")

    report = store_records(store, records(), "test")

    assert report.new == 1 and store.get_paper("2501.00001") is not None
    assert report.failures and "RuntimeError: the parser has a bug" in report.failures[0]


# -- links ------------------------------------------------------------------------------------


HOSTILE_URLS = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(document.cookie)",
    "java\tscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/p",
    "https://",
    "http://exa mple.org/",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_link_that_is_not_http_is_dropped_and_reported_and_the_paper_kept(store: Store, url: str):
    text = json.dumps({"id": "local-1", "title": "A title", "abstract": "An abstract.", "url": url})

    report = ingest_text(store, text, "jsonl")

    assert (report.new, report.skipped) == (1, 0)
    assert store.get_paper("local-1").url == ""
    assert len(report.warnings) == 1 and _line_of(report.warnings, 1)
    assert "http" in report.warnings[0]


def test_http_links_are_kept_and_an_arxiv_papers_link_is_built_from_its_id(store: Store):
    records = [
        {"id": "local-1", "title": "One", "abstract": "A.", "url": " https://example.org/p?q=1 "},
        {"id": "local-2", "title": "Two", "abstract": "B.", "url": "HTTP://example.org/two"},
        _record(3, url="https://evil.example/not-the-paper"),
        _record(4, url="javascript:alert(1)"),
    ]

    report = ingest_text(store, "\n".join(json.dumps(r) for r in records), "jsonl")

    assert report.new == 4 and len(report.warnings) == 1 and _line_of(report.warnings, 4)
    assert store.get_paper("local-1").url == "https://example.org/p?q=1"
    assert store.get_paper("local-2").url == "HTTP://example.org/two"
    assert store.get_paper("2501.00003").url == "https://arxiv.org/abs/2501.00003"
    assert store.get_paper("2501.00004").url == "https://arxiv.org/abs/2501.00004"


def test_cli_ingest_prints_a_dropped_link(run_cli, tmp_path: Path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"title": "T", "abstract": "A.", "url": "data:,x"}])

    result = run_cli("ingest", str(path))

    assert result.exit_code == 0, result.output
    assert "line 1" in result.stderr and "data:,x" in result.stderr
    assert json.loads(run_cli("ingest", str(path), "--json").stdout)["warnings"]


# -- large and broken files -----------------------------------------------------------------


def test_an_invalid_utf8_byte_costs_its_line_only(store: Store, tmp_path: Path):
    path = tmp_path / "bytes.jsonl"
    lines = [json.dumps(_record(n), ensure_ascii=False).encode() for n in (1, 2, 3)]
    lines[1] = lines[1].replace(b"graphs", b"gr\xffphs")
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = ingest_path(store, path)

    assert report.new == 2 and report.skipped == 1
    assert len(_line_of(report.errors, 2)) == 1 and "UTF-8" in report.errors[0]
    assert store.get_paper("2501.00001") and store.get_paper("2501.00003")


def test_an_overlong_line_is_skipped_unread_and_the_next_lines_kept(store: Store, tmp_path: Path):
    from newsletter.sources.jsonl import MAX_LINE_BYTES

    huge = json.dumps(_record(2, abstract="x" * (MAX_LINE_BYTES + 10)))
    path = write_jsonl(tmp_path / "long.jsonl", [_record(1), huge, _record(3), _record(4)])

    report = ingest_path(store, path)

    assert report.new == 3 and report.skipped == 1
    assert len(_line_of(report.errors, 2)) == 1 and "longer than" in report.errors[0]
    assert store.get_paper("2501.00004") is not None


def test_jsonl_with_a_line_separator_inside_a_string_is_one_record(store: Store, tmp_path: Path):
    record = _record(1, abstract="First part\u2028second part, on one JSON line.")
    path = tmp_path / "sep.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")

    report = ingest_path(store, path)

    assert (report.new, report.skipped) == (1, 0)
