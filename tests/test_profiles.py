"""Steering the ranking from the console: feedback, followed authors, categories."""

from __future__ import annotations

import json

from .conftest import write_jsonl

PAPERS = [
    {
        "id": "2501.00001",
        "title": "Spectral graph neural networks",
        "abstract": "Spectral filters for graph neural networks.",
        "categories": ["cs.LG"],
    },
    {
        "id": "2501.00002",
        "title": "Graph neural diffusion",
        "abstract": "Graph neural networks as diffusion processes.",
        "categories": ["cs.LG"],
    },
    {
        "id": "2501.00003",
        "title": "Elliptic regularity",
        "abstract": "Regularity of solutions of elliptic equations.",
        "categories": ["math.AP"],
    },
    {
        "id": "2501.00004",
        "title": "Parabolic regularity and graphs",
        "abstract": "Regularity of parabolic equations on graphs.",
        "categories": ["math.AP"],
    },
    {
        "id": "2501.00005",
        "title": "Tapestry dyes",
        "abstract": "Madder and woad in Flemish weaving.",
        "authors": ["Ada Lovelace"],
        "categories": ["physics.hist-ph"],
    },
]


def _preview(run_cli, email):
    result = run_cli("preview", email, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["papers"]


def _setup(run_cli, tmp_path, interests="graph neural networks and regularity", max_papers="2"):
    run_cli("ingest", str(write_jsonl(tmp_path / "p.jsonl", PAPERS)))
    run_cli(
        "subscribers", "add", "r@example.org", "--interests", interests, "--max-papers", max_papers
    )


def _scores(run_cli, email):
    return {p["id"]: p["score"] for p in _preview(run_cli, email)}


def test_like_from_the_console_pulls_similar_papers_up(run_cli, tmp_path):
    _setup(run_cli, tmp_path, max_papers="5")
    before = _scores(run_cli, "r@example.org")
    result = run_cli("subscribers", "like", "r@example.org", "2501.00003")
    assert result.exit_code == 0
    after = _preview(run_cli, "r@example.org")
    scores = {p["id"]: p["score"] for p in after}
    assert scores["2501.00004"] > before["2501.00004"]  # the liked paper's neighbour rises
    assert scores["2501.00001"] < before["2501.00001"] + 1e-9  # an unrelated one does not
    reason = next(p["reason"] for p in after if p["id"] == "2501.00004")
    assert "like “Elliptic regularity”, which you liked" in reason


def test_dislike_from_the_console_pushes_similar_papers_down(run_cli, tmp_path):
    _setup(run_cli, tmp_path, max_papers="5")
    before = _scores(run_cli, "r@example.org")
    assert run_cli("subscribers", "dislike", "r@example.org", "2501.00001").exit_code == 0
    after = _scores(run_cli, "r@example.org")
    assert "2501.00001" not in after  # never shown again
    assert after["2501.00002"] < before["2501.00002"]  # its neighbour drops
    assert after["2501.00003"] >= before["2501.00003"] - 1e-9


def test_feedback_on_an_unknown_paper_is_a_clear_error(run_cli, tmp_path):
    _setup(run_cli, tmp_path)
    result = run_cli("subscribers", "like", "r@example.org", "9999.99999")
    assert result.exit_code == 1
    assert "no paper '9999.99999'" in result.output


def test_followed_author_from_the_console_is_always_in_the_email(run_cli, tmp_path):
    _setup(run_cli, tmp_path)
    run_cli("subscribers", "update", "r@example.org", "--follow", "Ada Lovelace")
    papers = _preview(run_cli, "r@example.org")
    assert papers[0]["id"] == "2501.00005"
    assert "whom you follow" in papers[0]["reason"]


def test_categories_only_from_the_console_filters(run_cli, tmp_path):
    _setup(run_cli, tmp_path)
    run_cli(
        "subscribers", "update", "r@example.org", "--categories", "math.AP", "--categories-only"
    )
    ids = {p["id"] for p in _preview(run_cli, "r@example.org")}
    assert ids and ids <= {"2501.00003", "2501.00004"}


def test_profile_without_matches_gets_no_email(run_cli, tmp_path):
    _setup(run_cli, tmp_path, interests="byzantine numismatics")
    assert _preview(run_cli, "r@example.org") == []
    report = json.loads(run_cli("send", "--json").stdout)
    assert report["counts"] == {"skipped": 1}
