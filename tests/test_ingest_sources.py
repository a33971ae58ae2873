"""Ingest from the remote sources, served from the recorded real responses by a real HTTP
server on loopback (no mocking of httpx)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from newsletter.settings import Settings
from newsletter.sources.arxiv_api import ArxivAPISource
from newsletter.sources.arxiv_rss import ArxivRSSSource
from newsletter.sources.registry import http_client
from newsletter.store.ingest import ingest_sources

from .feedserver import FIXTURES, Reply

API_100 = (FIXTURES / "arxiv-api-query-testing-100.xml").read_bytes()
HF = (FIXTURES / "hf-daily-papers.json").read_bytes()
RSS = (FIXTURES / "arxiv-rss-cs.AI.xml").read_bytes()


@pytest.fixture
def client():
    with http_client(Settings(fetch_timeout=5.0)) as http:
        yield http


@pytest.fixture
def env(feed_server) -> dict[str, str]:
    return {
        "NEWSLETTER_ARXIV_API_URL": feed_server.url("/api/query"),
        "NEWSLETTER_ARXIV_RSS_URL": feed_server.url("/rss"),
        "NEWSLETTER_HF_DAILY_URL": feed_server.url("/api/daily_papers"),
        "NEWSLETTER_ARXIV_DELAY": "0",
        "NEWSLETTER_ARXIV_MAX_RESULTS": "100",
    }


def _ingest(run_cli, env, *args):
    result = run_cli("ingest", *args, "--json", env=env)
    return result, json.loads(result.stdout)


def test_arxiv_source_ingests_all_100_entries_with_ids_categories_and_authors(
    run_cli, env, feed_server, store
):
    feed_server.script("/api/query", Reply(body=API_100))
    result, report = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert result.exit_code == 0, result.output
    assert (report["new"], report["skipped"], report["errors"]) == (100, 0, [])
    assert report["sources"]["arxiv"]["fetched"] == 100

    paper = store.get_paper("2202.12139")
    assert paper.title.startswith("Testing Deep Learning Models")
    assert paper.url == "https://arxiv.org/abs/2202.12139"
    assert paper.authors and all(isinstance(a, str) and a for a in paper.authors)
    assert paper.categories and paper.categories[0] == "cs.SE"
    assert store.count("papers") == 100

    query = parse_qs(urlsplit(feed_server.requests[0].path).query)
    assert query["search_query"] == ["cat:cs.SE"]
    assert query["sortBy"] == ["submittedDate"]
    assert "newsletter/" in feed_server.requests[0].headers["User-Agent"]


def test_rerunning_an_ingest_adds_nothing_new(run_cli, env, feed_server):
    feed_server.script("/api/query", Reply(body=API_100))
    _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    _, again = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert again["new"] == 0 and again["updated"] == 0
    # Everything on the page is older than what the last run saw: no paper is re-read.
    assert again["fetched"] == 0


def test_arxiv_pages_with_a_polite_delay_until_papers_are_known(feed_server, store, client):
    feed_server.script(
        "/api/query",
        Reply(body=API_100),
        Reply(body=(FIXTURES / "arxiv-api-two-ids.xml").read_bytes()),
    )
    waits: list[float] = []
    source = ArxivAPISource(
        ["cs.SE"],
        base_url=feed_server.url("/api/query"),
        page_size=100,
        max_results=1000,
        delay=3.0,
        sleep=waits.append,
    )
    summary = ingest_sources(store, [source], client)
    starts = [parse_qs(urlsplit(r.path).query)["start"] for r in feed_server.requests]
    assert starts == [["0"], ["100"]]  # a short second page ends the paging
    assert waits == [3.0]
    assert summary.sources["arxiv"].new == 101


def test_rss_source_keeps_announce_types(run_cli, env, feed_server, store):
    feed_server.script("/rss/cs.AI", Reply(body=RSS))
    result, report = _ingest(run_cli, env, "--source", "arxiv-rss", "--category", "cs.AI")
    assert result.exit_code == 0, result.output
    assert report["new"] == 7
    types = {
        store.get_paper(r["id"]).extra.get("announce_type")
        for r in store.db.query("select id from papers")
    }
    assert {"new", "cross"} <= types
    assert feed_server.requests[0].path == "/rss/cs.AI"


def test_hf_daily_source_brings_upvotes_for_the_asked_date(run_cli, env, feed_server, store):
    feed_server.script("/api/daily_papers", Reply(body=HF))
    result, report = _ingest(run_cli, env, "--source", "hf-daily", "--date", "2026-11-20")
    assert result.exit_code == 0, result.output
    assert report["new"] == 30
    assert parse_qs(urlsplit(feed_server.requests[0].path).query)["date"] == ["2026-11-20"]
    assert store.get_paper("2611.10037").upvotes == 55


def test_same_paper_from_two_sources_is_one_row_with_both_sources_fields(
    run_cli, env, feed_server, store
):
    feed_server.script("/api/query", Reply(body=API_100))
    _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    hf_item = json.loads(HF)[0]
    hf_item["paper"]["id"] = "2202.12139v2"  # a later version, as HF lists it
    hf_item["paper"]["upvotes"] = 42
    feed_server.script("/api/daily_papers", Reply(body=json.dumps([hf_item]).encode()))
    _, report = _ingest(run_cli, env, "--source", "hf-daily")
    assert (report["new"], report["updated"]) == (0, 1)
    paper = store.get_paper("2202.12139")
    assert paper.upvotes == 42
    assert paper.categories[0] == "cs.SE"
    assert set(paper.source.split(",")) == {"arxiv", "hf-daily"}
    assert store.count("papers") == 100


def test_503_twice_then_200_is_retried(feed_server, store, client):
    feed_server.script("/api/query", Reply(503), Reply(503), Reply(body=API_100))
    waits: list[float] = []
    source = ArxivAPISource(
        ["cs.SE"], base_url=feed_server.url("/api/query"), max_results=100, sleep=waits.append
    )
    summary = ingest_sources(store, [source], client)
    assert summary.sources["arxiv"].new == 100
    assert len(feed_server.requests) == 3
    assert len(waits) == 2 and waits[1] > 0


def test_429_with_retry_after_is_waited_for(feed_server, store, client):
    feed_server.script("/rss/cs.AI", Reply(429, headers={"Retry-After": "12"}), Reply(body=RSS))
    waits: list[float] = []
    source = ArxivRSSSource(["cs.AI"], base_url=feed_server.url("/rss"), sleep=waits.append)
    summary = ingest_sources(store, [source], client)
    assert waits == [12.0]
    assert summary.sources["arxiv-rss"].new == 7


def test_body_cut_in_the_middle_keeps_the_complete_entries(run_cli, env, feed_server, store):
    cut = API_100[: len(API_100) // 2]
    feed_server.script("/api/query", Reply(body=cut))
    result, report = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert result.exit_code == 0
    complete = cut.count(b"</entry>")
    assert 40 <= complete < 100
    assert report["new"] == complete == store.count("papers")
    assert any("not well-formed" in e for e in report["errors"])


def test_entry_with_broken_markup_is_skipped_and_the_rest_kept(run_cli, env, feed_server, store):
    text = API_100.decode()
    start = text.index("<entry>", text.index("2405.13786") - 200)
    broken = text[:start] + text[start:].replace("</title>", "</titel>", 1)
    feed_server.script("/api/query", Reply(body=broken.encode()))
    result, report = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert result.exit_code == 0
    assert report["new"] == 99
    assert store.get_paper("2405.13786") is None
    assert store.get_paper("2202.12139") is not None


def test_a_source_that_fails_for_good_is_reported_and_the_others_still_come_in(
    run_cli, env, feed_server, store
):
    feed_server.script("/rss/cs.AI", Reply(body=RSS))
    feed_server.script("/rss/cs.LG", Reply(404))
    result, report = _ingest(
        run_cli, env, "--source", "arxiv-rss", "--category", "cs.LG", "--category", "cs.AI"
    )
    assert result.exit_code == 1
    assert report["new"] == 7
    assert len(report["failures"]) == 1 and "cs.LG" in report["failures"][0]
    assert "404" in report["failures"][0]


def test_arxiv_api_error_entry_is_an_error_not_a_paper(run_cli, env, feed_server, store):
    error_feed = API_100.decode().split("<entry>")[0] + (
        "<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>"
        "<title>Error</title><summary>incorrect id format for 1234</summary></entry></feed>"
    )
    feed_server.script("/api/query", Reply(body=error_feed.encode()))
    result, report = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert result.exit_code == 0  # a bad record, not a failed request
    assert report["new"] == 0 and store.count("papers") == 0
    assert any("arXiv API error: incorrect id format" in e for e in report["errors"])


@pytest.mark.parametrize(
    ("fixture", "expected_id"),
    [
        ("arxiv-api-old-style-id.xml", "astro-ph/0601001"),
        ("arxiv-api-two-ids.xml", "1707.08567"),
        ("arxiv-rss-cs.AI.xml", None),
        ("hf-daily-papers.json", "2611.10000"),
    ],
)
def test_ingest_url_detects_the_format(run_cli, env, feed_server, store, fixture, expected_id):
    result, report = _ingest(run_cli, env, feed_server.url(f"/fixtures/{fixture}"))
    assert result.exit_code == 0, result.output
    assert report["new"] >= 1 and report["errors"] == []
    if expected_id:
        assert store.get_paper(expected_id) is not None


def test_unknown_id_response_ingests_nothing(run_cli, env, feed_server, store):
    result, report = _ingest(run_cli, env, feed_server.url("/fixtures/arxiv-api-unknown-id.xml"))
    assert result.exit_code == 0
    assert report["new"] == 0 and store.count("papers") == 0


def test_daily_run_sends_the_edition_even_when_a_source_fails(run_cli, env, feed_server, tmp_path):
    feed_server.script("/api/daily_papers", Reply(500))
    feed_server.script("/rss/cs.AI", Reply(body=RSS))
    run_cli(
        "subscribers",
        "add",
        "ai@example.org",
        "--interests",
        "large language models agents reasoning",
    )
    daily_env = {
        **env,
        "NEWSLETTER_SOURCES": "arxiv-rss,hf-daily",
        "NEWSLETTER_ARXIV_CATEGORIES": "cs.AI",
        "NEWSLETTER_FETCH_RETRIES": "0",
    }
    result = run_cli("run", "--json", env=daily_env)
    assert result.exit_code == 1  # a source failed, and the operator must hear of it
    report = json.loads(result.stdout)
    assert report["ingest"]["sources"]["arxiv-rss"]["new"] == 7
    assert report["ingest"]["sources"]["hf-daily"]["failures"]
    assert report["send"]["counts"] == {"sent": 1}
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 1


def test_a_new_version_of_a_paper_already_sent_is_not_sent_again(run_cli, env, feed_server, store):
    from datetime import date, timedelta

    feed_server.script("/api/query", Reply(body=API_100))
    _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    run_cli("subscribers", "add", "dl@example.org", "--interests", "testing deep learning models")
    first = json.loads(run_cli("send", "--json", env=env).stdout)
    assert first["counts"] == {"sent": 1}
    sent = store.db.query("select paper_ids from deliveries").__next__()["paper_ids"]
    assert "2202.12139" in sent

    hf_item = json.loads(HF)[0]
    hf_item["paper"]["id"] = "2202.12139v3"
    hf_item["paper"]["title"] = "Testing Deep Learning Models (revised)"
    feed_server.script("/api/daily_papers", Reply(body=json.dumps([hf_item]).encode()))
    _ingest(run_cli, env, "--source", "hf-daily")

    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    preview = json.loads(
        run_cli("preview", "dl@example.org", "--date", tomorrow, "--format", "json").stdout
    )
    assert "2202.12139" not in [p["id"] for p in preview["papers"]]


def test_a_failed_page_does_not_move_the_newest_mark_so_the_next_run_asks_again(
    feed_server, store, client
):
    feed_server.script("/api/query", Reply(body=API_100), Reply(503))
    source = ArxivAPISource(
        ["cs.SE"],
        base_url=feed_server.url("/api/query"),
        page_size=100,
        max_results=300,
        delay=0,
        retries=0,
        sleep=lambda s: None,
    )
    first = ingest_sources(store, [source], client)
    assert first.sources["arxiv"].failures and first.sources["arxiv"].new == 100
    assert store.get_meta(f"source.{source.cursor}.newest") is None
    other = ArxivAPISource(["math.AP"], base_url=feed_server.url("/api/query"))
    assert other.cursor != source.cursor  # a one-off ingest of other categories has its own mark


def _hostile_hf_answer() -> bytes:
    """The recorded answer with one item whose upvotes overflow an SQLite integer."""
    items = json.loads(HF)
    items[3]["paper"]["upvotes"] = 10**30
    return json.dumps(items).encode()


def test_daily_run_with_a_hostile_hf_item_still_fetches_the_others_and_sends(
    run_cli, env, feed_server, tmp_path
):
    feed_server.script("/api/daily_papers", Reply(body=_hostile_hf_answer()))
    feed_server.script("/rss/cs.AI", Reply(body=RSS))
    run_cli("subscribers", "add", "ai@example.org", "--interests", "large language models agents")
    daily_env = {
        **env,
        "NEWSLETTER_SOURCES": "hf-daily,arxiv-rss",
        "NEWSLETTER_ARXIV_CATEGORIES": "cs.AI",
    }

    result = run_cli("run", "--json", env=daily_env)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    hf = report["ingest"]["sources"]["hf-daily"]
    assert (hf["new"], hf["skipped"]) == (29, 1)
    assert "items[3]" in hf["errors"][0] and "upvotes" in hf["errors"][0]
    assert report["ingest"]["sources"]["arxiv-rss"]["new"] == 7
    assert report["send"]["counts"] == {"sent": 1}
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "<published>2024-05-22T16:11:45Z</published>",
            "<published>0001-01-01T00:00:00+05:00</published>",
        ),
        (
            "<published>2024-05-22T16:11:45Z</published>",
            "<published>9999-12-31T23:00:00-05:00</published>",
        ),
    ],
)
def test_an_atom_entry_with_a_date_out_of_range_costs_only_that_entry(
    run_cli, env, feed_server, store, old, new
):
    feed_server.script("/api/query", Reply(body=API_100.replace(old.encode(), new.encode())))
    result, report = _ingest(run_cli, env, "--source", "arxiv", "--category", "cs.SE")
    assert result.exit_code == 0, result.output
    assert report["new"] == 99 and store.get_paper("2405.13786") is None
    assert len(report["errors"]) == 1 and "entry 2" in report["errors"][0]


class _BrokenSource:
    """A source whose reader breaks down after one paper."""

    name = "broken"
    cursor = "broken"

    def fetch(self, client, since):
        from .conftest import make_paper

        yield make_paper(900)
        raise RecursionError("maximum recursion depth exceeded")


def test_a_source_whose_reader_breaks_down_is_a_failure_and_the_next_one_still_runs(
    feed_server, store, client
):
    feed_server.script("/rss/cs.AI", Reply(body=RSS))
    later = ArxivRSSSource(["cs.AI"], base_url=feed_server.url("/rss"))

    summary = ingest_sources(store, [_BrokenSource(), later], client)

    broken = summary.sources["broken"]
    assert broken.new == 1 and store.get_paper("2501.00900") is not None
    assert broken.failures and "RecursionError" in broken.failures[0]
    assert summary.sources["arxiv-rss"].new == 7


def test_a_remote_jsonl_over_the_size_cap_keeps_the_papers_before_the_cut(
    run_cli, env, feed_server, store
):
    lines = [
        json.dumps({"id": f"2501.{n:05d}", "title": f"Paper {n}", "abstract": "An abstract."})
        for n in range(1, 201)
    ]
    body = ("\n".join(lines) + "\n").encode()
    feed_server.script("/big.jsonl", Reply(body=body))
    cap = len(body) // 2

    result, report = _ingest(
        run_cli, {**env, "NEWSLETTER_MAX_RESPONSE_BYTES": str(cap)}, feed_server.url("/big.jsonl")
    )

    assert result.exit_code == 1  # the operator must hear of the cut
    kept = body[:cap].count(b"\n")
    assert 90 <= kept < 200 and report["new"] == kept == store.count("papers")
    assert len(report["failures"]) == 1 and f"larger than {cap:,} bytes" in report["failures"][0]
    assert len(feed_server.requests) == 1  # a body over the cap is not asked for again


def test_a_source_answer_over_the_size_cap_is_a_failed_request(run_cli, env, feed_server, store):
    feed_server.script("/api/daily_papers", Reply(body=HF))
    capped = {**env, "NEWSLETTER_MAX_RESPONSE_BYTES": str(len(HF) - 1)}

    result, report = _ingest(run_cli, capped, "--source", "hf-daily")

    assert result.exit_code == 1 and store.count("papers") == 0
    assert "larger than" in report["failures"][0]
    result, report = _ingest(
        run_cli, {**capped, "NEWSLETTER_MAX_RESPONSE_BYTES": str(len(HF))}, "--source", "hf-daily"
    )
    assert result.exit_code == 0 and report["new"] == 30


def test_a_remote_jsonl_with_a_bad_byte_costs_that_line(run_cli, env, feed_server, store):
    lines = [
        json.dumps({"id": f"2501.{n:05d}", "title": f"Paper {n}", "abstract": "An abstract."})
        for n in (1, 2, 3)
    ]
    body = "\n".join(lines).encode().replace(b"Paper 2", b"Paper \xff2")
    feed_server.script("/p.jsonl", Reply(body=body))

    result, report = _ingest(run_cli, env, feed_server.url("/p.jsonl"))

    assert result.exit_code == 0, result.output
    assert report["new"] == 2 and len(report["errors"]) == 1
    assert "line 2" in report["errors"][0] and "UTF-8" in report["errors"][0]
