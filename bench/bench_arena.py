"""The arena's 2,000-vote check through the API: simulated voters with known Bradley–Terry
strengths for five real local models vote against a running app, 8 at once.

    .venv/bin/python bench/bench_arena.py [--votes 2000] [--voters 8]

The app is started as a user would (`python app.py`, offline) with ARENA_MODELS set to the five
models of tests/arena_voters.py; battles draw the first two LibriVox clips (the server reuses a
model's transcript of the same audio, so after the first runs a battle costs no model time). The
voters learn which models a battle drew from the app's SQLite file (read-only), the way a person
who can tell the models apart would. Prints the true rating, the recovered rating and its 95 %
interval per model, whether the interval covers the truth, and the votes per second.
Exit status 1 when the order is wrong or fewer than 4 of 5 intervals cover, or a vote was lost or doubled.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from explorer.config import default_models_dir  # noqa: E402
from tests.arena_voters import STRENGTHS, app_env, expected_ratings, stored_votes, vote_through_api  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=2000)
    parser.add_argument("--voters", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-arena-"))
    app = RunningApp(Path(os.environ.get("MODELS_DIR") or default_models_dir()), folder / "app.log",
                     DATA_DIR=folder / "data", NUM_WORKERS=1, GRADIO_TEMP_DIR=folder / "gradio", **app_env())  # fmt: skip
    try:
        election = vote_through_api(app, folder / "data", [c.path for c in librivox_clips()[:2]], args.votes, args.voters)
        board = app.client().predict(False, api_name="/arena_leaderboard")
    finally:
        app.stop()
    stored = stored_votes(folder / "data")
    expected = expected_ratings()
    rows = [
        {"model": r["model"], "true rating": round(expected[r["model"]], 1), "rating": r["rating"], "95% low": r["lower"],
         "95% high": r["upper"], "covered": r["lower"] <= expected[r["model"]] <= r["upper"], "votes": r["votes"]}
        for r in board["ratings"]
    ]  # fmt: skip
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; {len(election.cast)} votes by {args.voters} voters in {election.seconds:.1f} s "
          f"({len(election.cast) / election.seconds:.1f} votes/s); {len(election.errors)} errors")  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False))
    order_ok = [r["model"] for r in board["ratings"]] == sorted(STRENGTHS, key=STRENGTHS.get, reverse=True)
    covered = sum(r["covered"] for r in rows)
    intact = len(stored) == len(set(stored)) == len(election.cast) == board["votes"]
    print(f"order recovered: {order_ok}; intervals covering the truth: {covered} of {len(rows)}; "
          f"votes stored once each: {intact}")
    return 0 if order_ok and covered >= 4 and intact and not election.errors else 1


if __name__ == "__main__":
    sys.exit(main())
