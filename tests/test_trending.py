"""The trending signal: the score, the day's list from the store, the readers who told us
nothing (they get the trending papers), and the email-only subscription from the console."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from newsletter.models import Paper, to_utc_iso
from newsletter.ranking.engine import RankingParams, Signals, rank
from newsletter.ranking.trend import (
    HALF_LIFE_DAYS,
    age_days,
    trending_order,
    trending_reason,
    trending_score,
)
from newsletter.ranking.trending import trending_papers
from newsletter.store.ingest import ingest_path, sample_papers_path

from .conftest import make_paper, make_subscriber, write_jsonl

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HF_DAILY = FIXTURES / "hf-daily-papers.json"
TODAY = datetime.now(UTC).date()
NOW = datetime.now(UTC)


def seen(days_ago: int) -> str:
    """A first-seen time ``days_ago`` days before now."""
    return to_utc_iso(NOW - timedelta(days=days_ago))


def trend_paper(name: str, **fields) -> Paper:
    values = {"title": f"Paper {name}", "abstract": f"About {name}.", "first_seen_at": seen(0)}
    return Paper(id=name, **{**values, **fields})


# -- the score and the order ------------------------------------------------------------------


def test_score_is_log_upvotes_halved_per_day_of_age():
    assert trending_score(55, 0) == math.log2(56)
    assert trending_score(55, 1) == math.log2(56) - 1 / HALF_LIFE_DAYS
    # A day of age halves what the upvotes (plus one) are worth.
    assert trending_score(55, 1) == trending_score(27, 0)
    assert trending_score(None, 0) is None and trending_score(0, 0) is None


def test_age_counts_whole_utc_days_from_first_seen():
    day = date(2026, 11, 22)
    assert age_days("2026-11-22T23:59:59.000000+00:00", day) == 0
    assert age_days("2026-11-21T23:59:59.000000+00:00", day) == 1
    assert age_days("2026-11-19T00:00:00.000000+00:00", day) == 3
    assert age_days("2026-11-23T01:00:00.000000+00:00", day) == 0  # seen after the day
    assert age_days(None, day) == 0


def test_order_is_upvotes_with_decay_then_trending_page_places_then_newest():
    papers = [
        trend_paper("arxiv-old", published_at=seen(3)),
        trend_paper("page-2", trending_rank=2),
        trend_paper("old-55", upvotes=55, first_seen_at=seen(2)),
        trend_paper("fresh-20", upvotes=20),
        trend_paper("arxiv-new", published_at=seen(1)),
        trend_paper("page-1", trending_rank=1),
        trend_paper("fresh-89", upvotes=89),
        trend_paper("page-1-yesterday", trending_rank=1, first_seen_at=seen(1)),
    ]
    order = [papers[i].id for i in trending_order(papers, TODAY)]
    assert order == [
        "fresh-89",
        "fresh-20",  # log2(21) = 4.39 > log2(56) - 2 = 3.81
        "old-55",
        "page-1",  # today's page, in its order
        "page-2",
        "page-1-yesterday",
        "arxiv-new",  # no signal: the newest first
        "arxiv-old",
    ]


def test_ties_go_to_the_better_page_place_then_the_id():
    papers = [
        trend_paper("b", upvotes=55),
        trend_paper("a", upvotes=55),
        trend_paper("c", upvotes=55, trending_rank=4),
    ]
    assert [papers[i].id for i in trending_order(papers, TODAY)] == ["c", "a", "b"]


def test_reasons_say_upvotes_and_place():
    assert trending_reason(55, 3) == "trending: 55 upvotes, #3 on today's trending list"
    assert trending_reason(1, 1) == "trending: 1 upvote, #1 on today's trending list"
    assert trending_reason(None, 7) == "#7 on today's trending list"


# -- the day's list from the store ------------------------------------------------------------


def ingest_sample_and_hf(store) -> None:
    ingest_path(store, sample_papers_path())
    ingest_path(store, HF_DAILY)


def test_sample_page_places_are_kept_at_ingest(store):
    ingest_path(store, sample_papers_path())
    listed = trending_papers(store, TODAY, limit=200)
    assert len(listed) == 195
    assert [t.paper.trending_rank for t in listed] == list(range(1, 196))
    assert listed[0].paper.title.startswith("Multi-index Based Solution Theory")
    assert all(t.trending and t.score is None for t in listed)


def test_days_list_puts_upvoted_papers_first_by_score_and_pages(store):
    ingest_sample_and_hf(store)
    upvoted = json.loads(HF_DAILY.read_text())
    counted = sorted(
        (i["paper"]["upvotes"] for i in upvoted if i["paper"]["upvotes"]), key=lambda u: -u
    )

    first = trending_papers(store, TODAY)
    second = trending_papers(store, TODAY, limit=30, offset=30)

    assert len(first) == len(second) == 30
    assert [t.position for t in first + second] == list(range(1, 61))
    with_votes = [t for t in first + second if t.paper.upvotes]
    assert [t.paper.upvotes for t in with_votes] == counted  # 28 papers, best first
    assert with_votes == (first + second)[: len(counted)]
    assert first[0].paper.upvotes == 89 and first[0].reason.startswith("trending: 89 upvotes")
    assert store.get_paper("2611.10000").trending_rank == 1  # the sample page's first, re-keyed
    assert {t.paper.id for t in first}.isdisjoint(t.paper.id for t in second)
    # Papers whose HF entry had no upvotes keep their place on the sample page after them.
    after = (first + second)[len(counted) :]
    ranks = [t.paper.trending_rank for t in after]
    assert ranks == sorted(ranks)


def test_days_list_holds_the_papers_first_seen_in_its_window(store, tmp_path):
    store.save_paper(make_paper(1, first_seen_at=seen(0), upvotes=3))
    store.save_paper(make_paper(2, first_seen_at=seen(6)))
    store.save_paper(make_paper(3, first_seen_at=seen(9), upvotes=500))

    assert [t.paper.id for t in trending_papers(store, TODAY)] == ["2501.00001", "2501.00002"]
    yesterday = TODAY - timedelta(days=1)
    assert [t.paper.id for t in trending_papers(store, yesterday)] == ["2501.00002"]


def test_arxiv_only_papers_fall_back_to_recency(store):
    for n, days in enumerate([3, 0, 5, 1], start=1):
        store.save_paper(make_paper(n, published_at=seen(days), first_seen_at=seen(0)))
    listed = trending_papers(store, TODAY)
    assert [t.paper.id for t in listed] == ["2501.00002", "2501.00004", "2501.00001", "2501.00003"]
    assert not any(t.trending for t in listed)


# -- readers who told us nothing get the trending papers ---------------------------------------


PARAMS = RankingParams()


def test_a_reader_without_interests_gets_the_top_trending_papers_with_reasons():
    papers = [
        trend_paper("quiet"),
        trend_paper("hot", upvotes=89),
        trend_paper("warm", upvotes=13),
        trend_paper("ranked", trending_rank=1),
        trend_paper("muted", upvotes=40, abstract="A survey."),
    ]
    reader = make_subscriber(1, interests="", max_papers=3, muted_terms=["survey"])
    picks = rank([reader], papers, np.ones((1, len(papers)), bool), PARAMS, now=NOW)[1]

    assert [p.paper.id for p in picks] == ["hot", "warm", "ranked"]
    assert [p.reason for p in picks] == [
        "trending: 89 upvotes, #1 on today's trending list",
        "trending: 13 upvotes, #3 on today's trending list",  # "muted" is #2 for everyone
        "#4 on today's trending list",
    ]
    assert picks[0].score == trending_score(89, 0) and picks[2].score == 0.0


def test_a_reader_without_interests_never_gets_an_ineligible_paper():
    papers = [trend_paper("hot", upvotes=89), trend_paper("warm", upvotes=13)]
    reader = make_subscriber(1, interests="", max_papers=5)
    picks = rank([reader], papers, np.array([[False, True]]), PARAMS, now=NOW)[1]
    assert [p.paper.id for p in picks] == ["warm"]


def test_no_trending_signal_means_the_categories_papers_or_nothing_as_before():
    papers = [
        trend_paper("old", categories=["math.AP"], published_at=seen(3)),
        trend_paper("new", categories=["math.AP"], published_at=seen(0)),
        trend_paper("other", categories=["cs.LG"], published_at=seen(0)),
    ]
    eligible = np.ones((2, 3), bool)
    readers = [
        make_subscriber(1, interests="", categories=["math.AP"]),
        make_subscriber(2, interests=""),
    ]
    picks = rank(readers, papers, eligible, PARAMS, now=NOW)
    assert [p.paper.id for p in picks[1]] == ["new", "old"]
    assert picks[2] == []


def test_a_category_reader_whom_no_paper_suits_gets_the_trending_ones():
    papers = [trend_paper("hot", upvotes=89, categories=["cs.CV"]), trend_paper("plain")]
    reader = make_subscriber(1, interests="", categories=["math.AP"])
    picks = rank([reader], papers, np.ones((1, 2), bool), PARAMS, now=NOW)[1]
    assert [p.paper.id for p in picks] == ["hot"]
    # A filter stays a filter.
    only = replace(reader, categories_only=True)
    assert rank([only], papers, np.ones((1, 2), bool), PARAMS, now=NOW)[1] == []


def test_a_reader_with_interests_is_ranked_as_before_even_on_a_trending_day():
    papers = [trend_paper("hot", upvotes=89), make_paper(1, first_seen_at=seen(0))]
    reader = make_subscriber(1, interests="graph neural networks")
    picks = rank([reader], papers, np.ones((1, 2), bool), PARAMS, now=NOW)[1]
    assert [p.paper.id for p in picks] == ["2501.00001"]


# -- the email-only subscription from the console ---------------------------------------------


def preview_json(run_cli, *args: str) -> dict:
    result = run_cli("preview", "t@example.org", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_address_alone_gets_max_papers_trending_papers_and_never_one_twice(
    run_cli, tmp_path, store
):
    assert run_cli("ingest", "--sample").exit_code == 0
    assert run_cli("ingest", str(HF_DAILY)).exit_code == 0
    assert run_cli("subscribers", "add", "t@example.org").exit_code == 0

    first = preview_json(run_cli)["papers"]

    max_papers = store.get_subscriber("t@example.org").max_papers
    assert len(first) == max_papers == 5
    stored = {p.id: p for p in store.papers_by_ids(p["id"] for p in first)}
    upvotes = [stored[p["id"]].upvotes for p in first]
    assert all(upvotes)
    scores = [trending_score(u, 0) for u in upvotes]
    assert scores == sorted(scores, reverse=True)
    assert [p["score"] for p in first] == [round(s, 4) for s in scores]
    assert all(
        p["reason"].startswith(f"trending: {u} upvotes, #")
        for p, u in zip(first, upvotes, strict=True)
    )

    assert run_cli("send").exit_code == 0
    # The next day brings new papers; the second edition never repeats one.
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    fresh = [
        {"id": f"2612.{n:05d}", "title": f"Fresh paper {n}", "abstract": "New.", "upvotes": n}
        for n in range(1, 4)
    ]
    assert run_cli("ingest", str(write_jsonl(tmp_path / "fresh.jsonl", fresh))).exit_code == 0
    second = preview_json(run_cli, "--date", tomorrow)["papers"]
    assert [p["id"] for p in second] == ["2612.00003", "2612.00002", "2612.00001"]
    assert {p["id"] for p in first}.isdisjoint(p["id"] for p in second)


def test_a_reader_without_interests_whose_liked_papers_match_nothing_gets_trending_ones():
    liked = Paper(id="liked", title="Quantum chromodynamics lattice", abstract="Gluons.")
    papers = [trend_paper("hot", upvotes=89), trend_paper("plain")]
    reader = make_subscriber(1, interests="")
    signals = Signals(liked={1: [liked]})
    picks = rank([reader], papers, np.ones((1, 2), bool), PARAMS, signals=signals, now=NOW)[1]
    assert [p.paper.id for p in picks] == ["hot"]


# -- "Trending today" in a personal email -------------------------------------------------------


def personal_reader_json(run_cli, *args: str) -> dict:
    result = run_cli("preview", "r@example.org", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_personal_email_ends_with_trending_today_never_repeated(run_cli, store, tmp_path):
    assert run_cli("ingest", "--sample").exit_code == 0
    assert run_cli("ingest", str(HF_DAILY)).exit_code == 0
    interests = "diffusion models for image generation"
    assert run_cli("subscribers", "add", "r@example.org", "--interests", interests).exit_code == 0

    first = personal_reader_json(run_cli)
    picks, section = first["papers"], first["trending"]

    assert len(picks) == 5 and len(section) == 3  # trending_papers' default
    assert {p["id"] for p in picks}.isdisjoint(p["id"] for p in section)
    assert set(section[0]) == set(picks[0])  # the same fields
    listed = [t for t in trending_papers(store, date.today(), 20) if t.trending]
    expected = [t for t in listed if t.paper.id not in {p["id"] for p in picks}][:3]
    assert [p["id"] for p in section] == [t.paper.id for t in expected]
    assert [p["reason"] for p in section] == [t.reason for t in expected]
    text = run_cli("preview", "r@example.org", "--format", "text").stdout
    html_part = run_cli("preview", "r@example.org", "--format", "html").stdout
    assert "== Trending today ==" in text and "Trending today</h2>" in html_part
    for paper in section:
        title = store.get_paper(paper["id"]).title
        assert " ".join(title.split())[:40] in " ".join(text.split())
        assert f"paper={paper['id']}" in html_part  # its feedback links

    # Sent, both lists are recorded: the next edition repeats neither.
    assert run_cli("send").exit_code == 0
    (delivery,) = store.deliveries.for_edition(date.today().isoformat())
    assert delivery.paper_ids == [p["id"] for p in picks + section]
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    fresh = [
        {"id": f"2612.{n:05d}", "title": f"Diffusion image generation {n}", "abstract": "New."}
        for n in range(1, 3)
    ]
    assert run_cli("ingest", str(write_jsonl(tmp_path / "fresh.jsonl", fresh))).exit_code == 0
    second = personal_reader_json(run_cli, "--date", tomorrow)
    again = [p["id"] for p in second["papers"] + second["trending"]]
    assert second["trending"] and set(again).isdisjoint(delivery.paper_ids)
    # A preview of the sent edition shows it as it was sent, both sections.
    assert personal_reader_json(run_cli) == first


def test_trending_today_follows_the_readers_setting_and_mutes(run_cli, store):
    assert run_cli("ingest", "--sample").exit_code == 0
    assert run_cli("ingest", str(HF_DAILY)).exit_code == 0
    interests = "diffusion models for image generation"
    assert run_cli("subscribers", "add", "r@example.org", "--interests", interests).exit_code == 0
    top = personal_reader_json(run_cli)["trending"][0]

    run_cli("subscribers", "update", "r@example.org", "--trending-papers", "1")
    assert [p["id"] for p in personal_reader_json(run_cli)["trending"]] == [top["id"]]
    muted_word = "tangent" if "Tangent" in top["title"] else top["title"].split()[0]
    run_cli("subscribers", "update", "r@example.org", "--muted", muted_word)
    assert top["id"] not in [p["id"] for p in personal_reader_json(run_cli)["trending"]]
    run_cli("subscribers", "update", "r@example.org", "--trending-papers", "0")
    off = personal_reader_json(run_cli)
    assert off["papers"] and off["trending"] == []
    assert "Trending today" not in run_cli("preview", "r@example.org").stdout
    refused = run_cli("subscribers", "update", "r@example.org", "--trending-papers", "11")
    assert refused.exit_code != 0 and "0<=x<=10" in refused.output


def test_an_address_alone_gets_no_second_trending_section(run_cli):
    assert run_cli("ingest", str(HF_DAILY)).exit_code == 0
    assert run_cli("subscribers", "add", "t@example.org").exit_code == 0
    edition = preview_json(run_cli)
    assert len(edition["papers"]) == 5 and edition["trending"] == []
