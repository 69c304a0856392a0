"""Server-issued session tokens and the per-session slot counter: pure, no app."""

from __future__ import annotations

import threading

import pytest

from explorer.catalog import without_paths
from explorer.config import Settings
from explorer.sessions import SECRET_FILE, UNKNOWN_TOKEN, LimitReached, SessionSlots, SessionTokens, session_secret

SECRET = b"s" * 32


def test_issued_tokens_are_valid_distinct_and_carry_128_random_bits():
    tokens = SessionTokens(SECRET)
    issued = {tokens.issue() for _ in range(1000)}
    assert len(issued) == 1000 and all(tokens.valid(t) for t in issued)
    token_id, _, mac = next(iter(issued)).partition(".")
    assert len(token_id) == 22 and len(mac) == 22  # 16 bytes each, URL-safe base64 without padding
    assert all(c.isalnum() or c in "-_." for t in issued for c in t)


def test_forged_tampered_and_foreign_tokens_are_refused():
    tokens = SessionTokens(SECRET)
    real = tokens.issue()
    token_id, _, mac = real.partition(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    other_server = SessionTokens(b"t" * 32).issue()
    old_style = "x" * 43  # an unsigned token from before (secrets.token_urlsafe(32))
    for forged in (flipped, f"{token_id}.", f"{token_id[:-1]}B.{mac}", other_server, old_style, "a.b", ".", "token-a"):
        assert not tokens.valid(forged), forged
        with pytest.raises(PermissionError, match=UNKNOWN_TOKEN):
            tokens.check(forged)
    for empty in ("", "  ", None):
        with pytest.raises(PermissionError, match="no session token"):
            tokens.check(empty)
    assert tokens.check(f"  {real}\n") == real  # whitespace around a pasted token is forgiven


def test_short_secrets_are_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SessionTokens(b"short")
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        Settings(session_secret="short").validate()


def test_the_secret_file_is_made_once_private_and_kept(tmp_path):
    first = session_secret("", tmp_path / "data")
    path = tmp_path / "data" / SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 32
    assert session_secret("", tmp_path / "data") == first  # a restart keeps every session's token valid
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    token = SessionTokens(first).issue()
    assert SessionTokens(session_secret("", tmp_path / "data")).valid(token)
    configured = "c" * 40
    assert session_secret(configured, tmp_path / "other") == configured.encode()  # SESSION_SECRET wins
    assert not (tmp_path / "other").exists()


def test_slots_bound_each_session_and_the_total():
    slots = SessionSlots(per_session=2, total=3)
    slots.acquire("a")
    slots.acquire("a")
    with pytest.raises(LimitReached, match="this session already has 2 watchers open"):
        slots.acquire("a")
    slots.acquire("b")
    with pytest.raises(LimitReached, match="the server has 3 watchers open"):
        slots.acquire("c")
    slots.release("a")
    slots.acquire("c")  # a slot given back is free again
    assert (slots.held("a"), slots.held("b"), slots.held("c"), slots.held()) == (1, 1, 1, 3)


def test_a_slot_is_given_back_however_the_holder_ends():
    slots = SessionSlots(per_session=1, total=10)
    with pytest.raises(RuntimeError, match="boom"):
        with slots.hold("a"):
            raise RuntimeError("boom")
    assert slots.held() == 0

    def holder():
        with slots.hold("a"):
            yield "update"

    watcher = holder()
    assert next(watcher) == "update" and slots.held("a") == 1
    watcher.close()  # what a cancelled generator gets
    assert slots.held("a") == 0


def test_slots_under_contention_never_exceed_the_bound():
    slots = SessionSlots(per_session=2, total=100)
    granted, refused, most = [], [], [0]
    lock = threading.Lock()
    start = threading.Barrier(50)

    def one():
        start.wait()
        try:
            slots.acquire("same")
        except LimitReached:
            refused.append(1)
            return
        with lock:
            granted.append(1)
            most[0] = max(most[0], slots.held("same"))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(granted), len(refused), most[0]) == (2, 48, 2)


def test_public_reasons_name_no_server_path():
    cases = {
        "packaged weights in /home/u/.cache/open-asr-explorer/models/tiny": "packaged weights in a folder on this server",
        "in the Hugging Face cache (/root/.cache/huggingface/hub/models--a--b)": "in the Hugging Face cache (a folder on this server)",
        "OSError: No such file: '/srv/models/x/model.bin'": "OSError: No such file: 'a folder on this server'",
        "offline, and Systran/faster-whisper-small is not in the local cache": None,  # a Hub repo is no path
        "will download ~75 MB from openai/whisper-tiny": None,
        "see https://huggingface.co/org/name": None,
    }
    for reason, public in cases.items():
        assert without_paths(reason) == (public or reason)


def test_the_bounds_are_settings_read_from_the_environment_and_checked():
    env = {"MAX_BATCH_FILES": "3", "MAX_QUEUED_JOBS": "4", "MAX_WATCHERS_PER_SESSION": "1", "MAX_WATCHERS": "5",
           "JOB_API_CONCURRENCY": "2", "MAX_JOB_ROWS": "10", "ADMIN_TOKEN": " " + "a" * 16 + " ",
           "SESSION_SECRET": "s" * 32, "MAX_SESSIONS": "50"}  # fmt: skip
    s = Settings.from_env(env)
    assert s.max_sessions == 50 and Settings.from_env({}).max_sessions == 1000
    assert (s.max_batch_files, s.max_queued_jobs, s.max_watchers_per_session, s.max_watchers) == (3, 4, 1, 5)
    assert (s.job_api_concurrency, s.max_job_rows, s.admin_token, s.session_secret) == (2, 10, "a" * 16, "s" * 32)
    assert Settings.from_env({}).admin_token is None  # unset: /health never shows detail
    for bad, message in [
        ({"MAX_BATCH_FILES": "0"}, "at least 1"),
        ({"MAX_WATCHERS": "1", "MAX_WATCHERS_PER_SESSION": "2"}, "MAX_WATCHERS must be at least"),
        ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN must be at least 16"),
        ({"MAX_QUEUED_JOBS": "many"}, "must be an integer"),
        ({"MAX_SESSIONS": "0"}, "MAX_SESSIONS must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(bad)
