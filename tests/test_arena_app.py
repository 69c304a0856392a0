"""The arena in a running app (`python app.py`, five real local models: Whisper tiny.en in three
runtimes and two precisions, and base): simulated voters with known Bradley–Terry strengths vote
through the API, 8 at once; refused votes through the API; no model name in anything sent before
the vote; and the Arena tab in Debian's Chromium (Playwright), with a screenshot after a vote.

The simulated voters know which models a battle drew by reading the app's SQLite file (they
stand for people who can tell the models apart by ear; the API tells a client nothing): the test
is the omniscient side, the app is not told anything it would not be told by a person."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from gradio_client import handle_file

from explorer import arena, catalog
from explorer.jobs.arena_store import SqliteArenaStore
from tests.arena_voters import STRENGTHS, app_env, drawn_models, expected_ratings, stored_vote_rows, stored_votes, vote_through_api
from tests.running_app import RunningApp

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
VOTERS = 8
# Votes cast through the API (8 voters at once). bench/bench_arena.py casts 2,000; here fewer, to
# keep `make test` short (each vote is two API calls).
API_VOTES = int(os.environ.get("ARENA_TEST_VOTES", "400"))


@pytest.fixture(scope="module")
def arena_app(models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("arena-app")
    running = RunningApp(models_dir, folder / "app.log", DATA_DIR=folder / "data", NUM_WORKERS=1, **app_env())
    running.data_dir = folder / "data"
    yield running
    running.stop()


def test_simulated_voters_recover_the_known_order_through_the_api(arena_app, clips):
    client = arena_app.client()
    before = client.predict(False, api_name="/arena_leaderboard")["votes"]
    election = vote_through_api(arena_app, arena_app.data_dir, [c.path for c in clips[:2]], API_VOTES, VOTERS)
    assert not election.errors, election.errors[:3]
    assert len(election.cast) == API_VOTES
    print(f"{API_VOTES} votes through the API by {VOTERS} voters in {election.seconds:.1f} s")
    stored = stored_votes(arena_app.data_dir)
    assert len(stored) == len(set(stored)) == before + API_VOTES  # none lost, none doubled
    assert set(election.cast) <= set(stored)

    board = client.predict(False, api_name="/arena_leaderboard")
    assert board["votes"] == before + API_VOTES
    # These voters vote faster than anyone could read: flagged, and left out by default.
    assert board["flagged_sessions"] >= VOTERS
    assert client.predict(True, api_name="/arena_leaderboard")["excluded_votes"] >= API_VOTES
    ratings = board["ratings"]
    truth = sorted(STRENGTHS, key=STRENGTHS.get, reverse=True)
    # 400 votes over 10 pairs, neighbours 0.5 apart, do not always give the exact order: of 10,000
    # elections drawn as test_arena.simulated_votes draws them (seeds 10,000-19,999), 95.7 % were
    # exact and the rest swapped one neighbour pair; none put a model two places off. So each model
    # is held within one place of its true rank (a random order passes 8 times in 120, and the
    # intervals below must cover too); test_arena.py holds the exact order at 2,000 votes.
    places = [truth.index(r["model"]) for r in ratings]
    assert all(abs(place - rank) <= 1 for rank, place in enumerate(places)), ratings
    expected = expected_ratings()
    covered = [r["model"] for r in ratings if r["lower"] <= expected[r["model"]] <= r["upper"]]
    # The server draws pairs at random and 8 voters interleave as they may: this run is not
    # reproducible, so its check has a margin. Of 2,000 simulated 400-vote elections (seeds
    # 20,000-21,999), 75 % had all 5 intervals cover, 5 had fewer than 3 and 1 fewer than 2.
    assert len(covered) >= 2, (ratings, expected)
    # The API serves the leaderboard of exactly the stored votes (test_arena.py checks the method).
    recomputed = arena.leaderboard(stored_vote_rows(arena_app.data_dir), exclude_flagged=False).to_dict()
    assert board["ratings"] == recomputed["ratings"]


def names() -> list[str]:
    return [n for key in STRENGTHS for n in (key, catalog.get(key).name)]


def test_the_battle_payload_names_no_model_and_the_client_cannot_pick_them(arena_app, clips):
    client = arena_app.client()
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/arena_battle"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["audio_file", "session_token", "language_code", "share_audio"]
    seen = set()
    token = ""
    for _ in range(6):
        battle = client.predict(handle_file(str(clips[0].path)), token, "en", False, api_name="/arena_battle")
        token = battle["token"]
        text = json.dumps(battle).lower()
        for name in names():
            assert name.lower() not in text, name
        a, b = drawn_models(arena_app.data_dir, battle["battle"])
        assert a != b and {a, b} <= set(STRENGTHS)
        seen.add(frozenset((a, b)))
        revealed = client.predict(token, battle["battle"], "tie", clips[0].reference, api_name="/arena_vote")
        assert (revealed["models"]["A"]["model"], revealed["models"]["B"]["model"]) == (a, b)
        assert revealed["models"]["A"]["name"] == catalog.get(a).name
        assert all(side["wer"] is not None and side["wer"] < 0.5 for side in revealed["models"].values())
        assert revealed["models"]["A"]["metrics"]["rtfx"] > 0
    # Six draws of ten pairs are random: 4 or more different pairs in only 95 % of runs (CI once saw
    # 3), and never a single one in 2,000 simulated runs of this module's votes. What must hold is
    # the evening out: over every stored vote (the voters' of the test before, when run in order),
    # the most and the least voted pair differ by at most 8 in those 2,000 runs, with 8 battles
    # outstanding at a time; uniform draws would differ by a median of 19 (12 or less in 7 %).
    assert len(seen) >= 2
    store = SqliteArenaStore(arena_app.data_dir / "jobs.sqlite3")
    counts = store.pair_counts()  # what the server's draw reads
    assert counts == arena.pair_counts(store.votes())
    per_pair = [counts.get(frozenset(pair), 0) for pair in itertools.combinations(STRENGTHS, 2)]
    assert max(per_pair) - min(per_pair) <= 12, counts


def test_forged_and_reused_battle_ids_are_refused_through_the_api(arena_app, clips):
    client = arena_app.client()
    battle = client.predict(handle_file(str(clips[1].path)), "", "en", False, api_name="/arena_battle")
    other = client.predict(handle_file(str(clips[1].path)), "", "en", False, api_name="/arena_battle")
    with pytest.raises(Exception, match="not issued to this session"):
        client.predict(battle["token"], "forged-" + battle["battle"][7:], "a", "", api_name="/arena_vote")
    with pytest.raises(Exception, match="not issued to this session"):
        client.predict(other["token"], battle["battle"], "a", "", api_name="/arena_vote")  # another session's
    with pytest.raises(Exception, match="unknown session token"):
        client.predict("made.up", battle["battle"], "a", "", api_name="/arena_vote")
    with pytest.raises(Exception, match="a, b, tie, both_bad"):
        client.predict(battle["token"], battle["battle"], "c", "", api_name="/arena_vote")
    client.predict(battle["token"], battle["battle"], "b", "", api_name="/arena_vote")
    with pytest.raises(Exception, match="already"):
        client.predict(battle["token"], battle["battle"], "a", "", api_name="/arena_vote")
    with pytest.raises(Exception, match="No audio"):
        client.predict(None, battle["token"], "en", False, api_name="/arena_battle")
    assert client.predict(False, api_name="/arena_leaderboard")["votes"] >= 1  # the server still serves


# -- the tab in a real browser -----------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


def test_the_arena_tab_hides_names_until_the_vote_in_chromium(arena_app):
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run the tests with `make test`")
    from playwright.sync_api import sync_playwright

    from tests.browser_page import ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(arena_app.url)
            page.get_by_role("tab", name="Arena").click()
            panel = page.get_by_role("tabpanel")
            panel.get_by_role("button", name="A sample clip").click()
            # The clip is in the Audio component once its player shows the duration (m:ss).
            page.wait_for_function("() => /\\d:\\d\\d/.test(document.querySelector('#arena-audio')?.innerText || '')", timeout=30_000)
            panel.get_by_role("button", name="Battle", exact=False).first.click()
            page.wait_for_function(
                "() => ['#arena-a textarea', '#arena-b textarea'].every(s => document.querySelector(s)?.value.length > 0)",
                timeout=120_000,
            )
            battle = page.locator("#arena-battle")

            def shown() -> str:
                values = " ".join(battle.locator("textarea").evaluate_all("(ts) => ts.map(t => t.value)"))
                return (battle.inner_html() + values).lower()

            before = shown()
            for name in names():
                assert name.lower() not in before, name
            page.locator("#arena-vote-a").click()
            page.locator("#arena-revealed").wait_for(timeout=30_000)
            drawn = page.locator("#arena-revealed code").all_inner_texts()
            assert len(set(drawn)) == 2 and set(drawn) <= set(STRENGTHS), drawn
            after = shown()
            assert all(k.lower() in after and catalog.get(k).name.lower() in after for k in drawn)
            page.wait_for_function(  # the leaderboard, refreshed after the vote, lists the drawn models
                "(keys) => keys.every(k => document.querySelector('#arena-leaderboard')?.textContent.includes(k))",
                arg=drawn, timeout=30_000,
            )  # fmt: skip
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "arena.png"), full_page=True)
        finally:
            browser.close()
