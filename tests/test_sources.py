"""The feed parsers, against recorded real responses (``tests/fixtures``) and against
broken variants of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from newsletter.models import Paper
from newsletter.sources import RecordError
from newsletter.sources.arxiv_api import build_query_url, parse_arxiv_atom
from newsletter.sources.arxiv_rss import parse_arxiv_rss
from newsletter.sources.hf_daily import parse_hf_daily

FIXTURES = Path(__file__).resolve().parent / "fixtures"

ATOM_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<feed xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">\n'
    "  <title>arXiv Query</title>\n"
)
RSS_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0">\n'
    "  <channel>\n    <title>cs.AI updates on arXiv.org</title>\n"
)
#: The entry the arXiv API returns for a malformed id, as documented in its user manual.
API_ERROR_ENTRY = """
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_0000.0000</id>
    <title>Error</title>
    <summary>incorrect id format for 0000.0000</summary>
    <updated>2026-04-12T00:00:00-04:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_0000.0000" rel="alternate"/>
    <author><name>arXiv api core</name></author>
  </entry>
"""


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def split(records: list) -> tuple[list[Paper], list[RecordError]]:
    papers = [r for r in records if isinstance(r, Paper)]
    errors = [r for r in records if isinstance(r, RecordError)]
    assert len(papers) + len(errors) == len(records)
    return papers, errors


# -- arXiv API --------------------------------------------------------------------------


def test_api_response_gives_every_entry_with_its_fields() -> None:
    papers, errors = split(list(parse_arxiv_atom(fixture("arxiv-api-query-testing-100.xml"))))

    assert errors == []
    assert len(papers) == 100
    assert len({p.id for p in papers}) == 100
    first = papers[0]
    assert first == Paper(
        id="2202.12139",
        title="Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques",
        abstract=first.abstract,
        source="arxiv",
        authors=["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"],
        categories=["cs.SE", "cs.LG"],
        url="https://arxiv.org/abs/2202.12139",
        published_at="2022-02-24T15:05:19.000000+00:00",
    )
    assert first.abstract.startswith("Deep Learning (DL) has revolutionized the capabilities")
    assert first.abstract.endswith("and discuss its results.")
    assert papers[2].id == "2005.14124"  # <id> ends in v2: the version is dropped
    assert {"cs/0503050", "hep-ph/0301050", "gr-qc/0103067"} <= {p.id for p in papers}


def test_api_id_list_response_gives_the_valid_id_without_version() -> None:
    # Asked for 0808.05394 (not a valid id: five digits after a 2008 yymm) and 1707.08567;
    # the API answered with the one entry it could find.
    papers, errors = split(list(parse_arxiv_atom(fixture("arxiv-api-two-ids.xml"))))

    assert errors == []
    assert [p.id for p in papers] == ["1707.08567"]
    paper = papers[0]
    assert paper.url == "https://arxiv.org/abs/1707.08567"
    assert paper.categories == ["cs.IT"]
    assert len(paper.authors) == 34
    assert paper.authors[0] == "Kees A. Schouhamer Immink"
    assert paper.authors[-1] == "Hirosuke Yamamoto"
    assert paper.published_at == "2017-07-27T08:18:33.000000+00:00"


def test_api_old_style_id_is_kept_with_its_archive() -> None:
    [paper] = parse_arxiv_atom(fixture("arxiv-api-old-style-id.xml"))

    assert isinstance(paper, Paper)
    assert paper.id == "astro-ph/0601001"
    assert paper.url == "https://arxiv.org/abs/astro-ph/0601001"
    assert paper.categories == ["astro-ph"]
    assert paper.authors == ["Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski"]
    # Leading blanks stripped, XML entities decoded.
    assert paper.abstract.startswith("We derive the frequencies of hot Jupiters")
    assert "Gould & Morgan (2003)" in paper.abstract
    assert "V_max<17.5" in paper.abstract


def test_api_response_for_unknown_id_gives_nothing() -> None:
    assert list(parse_arxiv_atom(fixture("arxiv-api-unknown-id.xml"))) == []


def test_api_error_entry_is_a_record_error_not_a_paper() -> None:
    feed = ATOM_HEAD + API_ERROR_ENTRY + "</feed>"

    [record] = parse_arxiv_atom(feed)

    assert isinstance(record, RecordError)
    assert record.where.startswith("entry 1 (http://arxiv.org/api/errors#")
    assert record.message == "arXiv API error: incorrect id format for 0000.0000"


def test_api_entry_puts_primary_category_first_and_normalizes_whitespace() -> None:
    entry = """
  <entry>
    <id>http://arxiv.org/abs/2501.00001v3</id>
    <title>Graph   Neural
       Networks, Again</title>
    <summary>
      First line
      second line.
    </summary>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.AI" scheme="http://arxiv.org/schemas/atom"/>
    <arxiv:primary_category term="cs.AI"/>
    <published>2025-01-02T03:04:05-05:00</published>
    <author><name> Ada  Lovelace </name></author>
  </entry>
"""
    [paper] = parse_arxiv_atom(ATOM_HEAD + entry + "</feed>")

    assert isinstance(paper, Paper)
    assert paper.title == "Graph Neural Networks, Again"
    assert paper.abstract == "First line second line."
    assert paper.categories == ["cs.AI", "cs.LG"]
    assert paper.authors == ["Ada Lovelace"]
    assert paper.published_at == "2025-01-02T08:04:05.000000+00:00"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "<title>Towards Explainable Test Case Prioritisation with Learning-to-Rank Models</title>",
            "",
            "missing title",
        ),
        ("<summary>Test case prioritisation (TCP) is", "<nosummary>", "missing summary"),
        (
            "<published>2024-05-22T16:11:45Z</published>",
            "<published>last Tuesday</published>",
            "published is not a date: 'last Tuesday'",
        ),
    ],
)
def test_api_broken_entry_is_reported_by_position_and_id_and_others_kept(
    old: str, new: str, message: str
) -> None:
    text = fixture("arxiv-api-query-testing-100.xml")
    if new == "<nosummary>":  # drop the whole <summary> element of entry 2
        start = text.index(old)
        text = text[:start] + text[text.index("</summary>", start) + len("</summary>") :]
    else:
        assert text.count(old) == 1
        text = text.replace(old, new)

    papers, errors = split(list(parse_arxiv_atom(text)))

    assert errors == [RecordError("entry 2 (http://arxiv.org/abs/2405.13786v1)", message)]
    assert len(papers) == 99
    assert "2405.13786" not in {p.id for p in papers}


def test_api_entry_with_a_foreign_id_is_reported() -> None:
    entry = "<entry><id>urn:x:1</id><title>T</title><summary>S</summary></entry>"

    assert list(parse_arxiv_atom(ATOM_HEAD + entry + "</feed>")) == [
        RecordError("entry 1 (urn:x:1)", "id 'urn:x:1' is not an arXiv abs URL")
    ]


def test_truncated_api_response_keeps_the_complete_entries_before_the_break() -> None:
    text = fixture("arxiv-api-query-testing-100.xml")
    fourth = text.index("<entry>")
    for _ in range(3):
        fourth = text.index("<entry>", fourth + 1)

    records = list(parse_arxiv_atom(text[: fourth + 300]))

    assert isinstance(records[0], RecordError)
    assert records[0].where == "document"
    assert records[0].message.startswith("not well-formed XML (")
    assert [p.id for p in records[1:]] == ["2202.12139", "2405.13786", "2005.14124"]
    assert records[1] == next(parse_arxiv_atom(text))  # salvaged entries are read in full


def test_malformed_entry_in_a_broken_document_costs_only_that_entry() -> None:
    text = fixture("arxiv-api-query-testing-100.xml")
    old = "<title>Towards Explainable Test Case Prioritisation"
    text = text.replace(old, "<title>Towards & Explainable Test Case Prioritisation")

    papers, errors = split(list(parse_arxiv_atom(text)))

    assert [e.where for e in errors] == ["document", "entry 2"]
    assert errors[1].message.startswith("not well-formed XML (")
    assert len(papers) == 99
    assert "2405.13786" not in {p.id for p in papers}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "not well-formed XML (no element found"),
        ("<html><body><h1>503 Service Unavailable", "not well-formed XML ("),
        ("<html><body>Rate exceeded.</body></html>", "root element is <html>, expected <feed>"),
    ],
)
def test_body_that_is_not_a_feed_is_one_document_error(body: str, message: str) -> None:
    [record] = parse_arxiv_atom(body)

    assert isinstance(record, RecordError)
    assert record.where == "document"
    assert record.message.startswith(message)


def test_query_url_combines_categories_and_terms_newest_first() -> None:
    url = build_query_url(
        "https://export.arxiv.org/api/query",
        ["cs.AI", "cs.LG"],
        ["graph neural", "diffusion"],
        50,
        100,
    )

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://export.arxiv.org/api/query"
    assert parse_qs(parts.query) == {
        "search_query": ['(cat:cs.AI OR cat:cs.LG) AND all:"graph neural" AND all:diffusion'],
        "sortBy": ["submittedDate"],
        "sortOrder": ["descending"],
        "start": ["50"],
        "max_results": ["100"],
    }


@pytest.mark.parametrize(
    ("categories", "terms", "query"),
    [
        (["cs.AI"], [], "cat:cs.AI"),
        ([], ['"quoted"  term '], 'all:"quoted term"'),
        (["cs.CL", "cs.IR"], [""], "(cat:cs.CL OR cat:cs.IR)"),
    ],
)
def test_query_url_with_only_categories_or_only_terms(
    categories: list[str], terms: list[str], query: str
) -> None:
    url = build_query_url("http://api.test/query", categories, terms, 0, 10)

    assert parse_qs(urlsplit(url).query)["search_query"] == [query]


@pytest.mark.parametrize(
    ("categories", "terms", "start", "max_results"),
    [([], [], 0, 10), ([" "], [""], 0, 10), (["cs.AI"], [], -1, 10), (["cs.AI"], [], 0, 0)],
)
def test_query_url_refuses_an_empty_query_or_bad_paging(
    categories: list[str], terms: list[str], start: int, max_results: int
) -> None:
    with pytest.raises(ValueError):
        build_query_url("http://api.test/query", categories, terms, start, max_results)


# -- arXiv announcement feed ---------------------------------------------------------------


def test_rss_feed_gives_papers_with_announce_type_and_abstract_after_marker() -> None:
    papers, errors = split(list(parse_arxiv_rss(fixture("arxiv-rss-cs.AI.xml"))))

    assert errors == []
    assert all(isinstance(p, Paper) for p in papers)
    assert {p.id: p.extra.get("announce_type") for p in papers} == {
        "2508.13426": "cross",
        "2508.13428": "cross",
        "2508.13429": "cross",
        "2508.13434": "cross",
        "2508.13435": "cross",
        "2508.14001": "new",
        "2508.14002": "new",
    }
    first = papers[0]
    assert first.source == "arxiv-rss"
    assert first.title.startswith("ALIGN: Word Association Learning")
    assert first.abstract.startswith("As large language models (LLMs) increasingly mediate")
    assert first.abstract.endswith("improving cultural alignment in AI models.")
    assert first.authors == ["Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang"]
    assert first.categories == ["cs.CL", "cs.AI"]
    assert first.url == "https://arxiv.org/abs/2508.13426"
    assert first.published_at == "2025-08-20T04:00:00.000000+00:00"
    assert papers[4].abstract == "Spectral graph embedding methods are widely used."
    assert papers[6].categories == ["cs.AI", "cs.MA"]
    assert not any("Announce Type" in p.abstract for p in papers)


def rss_item(number: str, announce: str, description: str, title: str = "A title") -> str:
    return f"""
    <item>
      <title>{title}</title>
      <link>https://arxiv.org/abs/{number}</link>
      <description>{description}</description>
      <guid isPermaLink="false">oai:arXiv.org:{number}v3</guid>
      <category>cs.AI</category>
      <category>stat.ML</category>
      <pubDate>Fri, 23 Aug 2024 00:00:00 -0400</pubDate>
      <arxiv:announce_type>{announce}</arxiv:announce_type>
      <dc:creator>Jane Doe, John Roe</dc:creator>
    </item>"""


def test_rss_2_0_feed_is_read_like_the_atom_one() -> None:
    feed = (
        RSS_HEAD
        + rss_item(
            "2203.01250",
            "replace",
            "arXiv:2203.01250v3 Announce Type: replace\nAbstract: Old news.",
        )
        + rss_item(
            "2203.01251", "replace-cross", "arXiv:2203.01251v3 Announce Type: replace-cross Plain."
        )
        + "</channel></rss>"
    )

    papers, errors = split(list(parse_arxiv_rss(feed)))

    assert errors == []
    assert [(p.id, p.extra.get("announce_type"), p.abstract) for p in papers] == [
        ("2203.01250", "replace", "Old news."),
        ("2203.01251", "replace-cross", "Plain."),
    ]
    assert papers[0].categories == ["cs.AI", "stat.ML"]
    assert papers[0].authors == ["Jane Doe", "John Roe"]
    assert papers[0].published_at == "2024-08-23T04:00:00.000000+00:00"


def test_rss_broken_items_are_reported_and_others_kept() -> None:
    feed = (
        RSS_HEAD
        + rss_item("2501.00001", "new", "Abstract: Fine.")
        + rss_item("2501.00002", "new", "Abstract: No title.", title="")
        + rss_item("2501.00003", "new", "arXiv:2501.00003v3 Announce Type: new")
        + rss_item("2501.00004", "new", "Abstract: Fine too.")
        + "</channel></rss>"
    )

    papers, errors = split(list(parse_arxiv_rss(feed)))

    assert [p.id for p in papers] == ["2501.00001", "2501.00004"]
    assert errors == [
        RecordError("item 2 (oai:arXiv.org:2501.00002v3)", "missing title"),
        RecordError("item 3 (oai:arXiv.org:2501.00003v3)", "missing abstract"),
    ]


@pytest.mark.parametrize(
    "feed",
    [
        ATOM_HEAD + "  <id>http://rss.arxiv.org/atom/cs.AI</id>\n</feed>\n",
        RSS_HEAD
        + "    <skipDays><day>Saturday</day><day>Sunday</day></skipDays>\n</channel></rss>",
    ],
    ids=["atom", "rss"],
)
def test_empty_announcement_feed_yields_nothing(feed: str) -> None:
    assert list(parse_arxiv_rss(feed)) == []


def test_truncated_rss_feed_keeps_complete_entries() -> None:
    text = fixture("arxiv-rss-cs.AI.xml")

    records = list(parse_arxiv_rss(text[: text.index("<entry>", text.index("<entry>") + 1) + 50]))

    assert [r.where if isinstance(r, RecordError) else r.id for r in records] == [
        "document",
        "2508.13426",
    ]


# -- Hugging Face daily papers ------------------------------------------------------------


def test_hf_daily_gives_papers_with_upvotes_comments_and_repo() -> None:
    papers, errors = split(list(parse_hf_daily(fixture("hf-daily-papers.json"))))

    assert errors == []
    assert len(papers) == 30
    assert all(isinstance(p, Paper) and p.source == "hf-daily" for p in papers)
    first, second = papers[:2]
    assert first.id == "2611.10000"
    assert first.title.startswith("Multi-index Based Solution Theory to the Φ^4 Equation")
    assert first.abstract.startswith("We obtain (small-parameter) well-posedness")
    assert first.authors == ["C. Lindqvist", "G. Novak", "A. Rivera"]
    assert first.url == "https://arxiv.org/abs/2611.10000"
    assert first.published_at == "2026-11-20T00:00:00.000000+00:00"
    assert (first.upvotes, first.extra.get("num_comments")) == (1, 8)
    assert first.extra.get("github_repo") == "https://github.com/example/2611.10000"
    assert (
        second.id,
        second.upvotes,
        second.extra.get("num_comments"),
        second.extra.get("github_repo"),
    ) == (
        "2611.10037",
        55,
        0,
        None,
    )
    assert max(papers, key=lambda p: p.upvotes or 0).upvotes == 89
    assert sum("github_repo" in p.extra for p in papers) == 10


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>Too Many Requests</html>", "not valid JSON (Expecting value at line 1)"),
        ("", "not valid JSON (Expecting value at line 1)"),
        ('{"error": "Invalid date"}', "expected a JSON list, got dict"),
    ],
)
def test_hf_body_that_is_not_a_list_is_one_document_error(body: str, message: str) -> None:
    assert list(parse_hf_daily(body)) == [RecordError("document", message)]


def test_hf_bad_items_are_reported_by_index_and_others_kept() -> None:
    items = json.loads(fixture("hf-daily-papers.json"))[:6]
    del items[1]["paper"]["title"], items[1]["title"]
    items[2]["paper"]["upvotes"] = -3
    items[3] = "not an item"
    del items[4]["paper"]
    items[5]["numComments"] = "many"
    good = copy.deepcopy(items[0])

    papers, errors = split(list(parse_hf_daily(json.dumps([*items, good]))))

    assert [p.id for p in papers] == ["2611.10000", "2611.10000"]
    assert errors == [
        RecordError("items[1] (2611.10037)", "missing title"),
        RecordError("items[2] (2611.10074)", "upvotes must be a non-negative integer, got -3"),
        RecordError("items[3]", "expected a JSON object, got str"),
        RecordError("items[4]", "missing paper object"),
        RecordError(
            "items[5] (2611.10185)", "numComments must be a non-negative integer, got 'many'"
        ),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "not readable JSON (nested too deeply)"),
        ('[{"paper": {"upvotes": 1' + "0" * 5000 + "}}]", "not readable JSON (Exceeds the limit"),
    ],
)
def test_hf_body_too_deep_or_with_a_huge_integer_is_one_document_error(body, message) -> None:
    records = list(parse_hf_daily(body))

    assert len(records) == 1 and records[0].where == "document"
    assert records[0].message.startswith(message)


def test_hf_counts_out_of_range_cost_only_their_item() -> None:
    items = json.loads(fixture("hf-daily-papers.json"))[:3]
    items[0]["paper"]["upvotes"] = 10**30
    items[1]["numComments"] = 10**10
    items[2]["paper"]["publishedAt"] = "9999-12-31T23:00:00-05:00"

    papers, errors = split(list(parse_hf_daily(json.dumps([*items, items[0] | {"paper": {}}]))))

    assert papers == []
    assert [e.where for e in errors] == [
        "items[0] (2611.10000)",
        "items[1] (2611.10037)",
        "items[2] (2611.10074)",
        "items[3]",
    ]
    assert errors[0].message == f"upvotes must be at most 1,000,000,000, got {10**30}"
    assert errors[1].message.startswith("numComments must be at most")
    assert errors[2].message.startswith("published is out of range")


def test_hf_paper_without_an_arxiv_id_links_to_its_page_with_the_id_quoted() -> None:
    item = json.loads(fixture("hf-daily-papers.json"))[0]
    item["paper"]["id"] = 'x" onclick="alert(1)'

    (paper,) = parse_hf_daily(json.dumps([item]))

    assert paper.url == "https://huggingface.co/papers/x%22%20onclick%3D%22alert%281%29"


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("0001-01-01T00:00:00+05:00", "date is out of range"),
        ("Fri, 31 Dec 9999 23:00:00 -0500", "date is out of range"),
        ("Thu, 01 Jan 1970 00:00:00 +0000", "date is before 1991"),
        ("Fri, 31 Dec 2100 00:00:00 +0000", "date is in the future"),
    ],
)
def test_rss_item_with_a_date_out_of_range_is_reported_and_others_kept(date, message) -> None:
    good = rss_item("2508.00001", "new", "Abstract: Kept.")
    bad = rss_item("2508.00002", "new", "Abstract: Refused.").replace(
        "Fri, 23 Aug 2024 00:00:00 -0400", date
    )

    papers, errors = split(list(parse_arxiv_rss(RSS_HEAD + good + bad + "</channel></rss>")))

    assert [p.id for p in papers] == ["2508.00001"]
    assert len(errors) == 1 and errors[0].where.startswith("item 2")
    assert errors[0].message.startswith(message)
