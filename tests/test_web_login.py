"""Login throttling under concurrent guesses (docs/web.md: 5 failures per user and client address in
60 s lock that pair for a minute)."""

from __future__ import annotations

import re
import threading
from collections import Counter

import requests

from mit_network_audit.journal import open_store
from mit_network_audit.web.auth import MAX_FAILURES, Accounts
from web_live import PASSWORD, LiveDashboard


def test_guesses_sent_at_once_are_throttled_too(tmp_path):
    """A failure was counted only after its password check (~50 ms of argon2): 40 guesses sent at once
    were all checked (40 a minute instead of 5).  Now an attempt counts from its start."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    open_store(dsn).close()
    server = LiveDashboard(dsn)
    try:
        forms = []
        for _ in range(40):
            session = requests.Session()
            forms.append((session, re.search(r'name="csrf" value="([^"]+)"',
                                             session.get(server.url + "/login").text).group(1)))
        start, outcomes = threading.Barrier(len(forms)), []

        def guess(i, session, csrf):
            start.wait()
            r = session.post(server.url + "/login", data={"username": "officer", "password": f"guess-{i}",
                                                          "csrf": csrf}, allow_redirects=False)
            outcomes.append(r.headers["location"])

        threads = [threading.Thread(target=guess, args=(i, *form)) for i, form in enumerate(forms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        counts = Counter(outcomes)
        assert counts["/login?error=invalid"] <= MAX_FAILURES and sum(counts.values()) == 40, counts
        # another user is not affected
        assert server.login("auditor")
    finally:
        server.stop()


def test_a_success_does_not_count_as_a_failure(tmp_path):
    accounts = Accounts(open_store(f"sqlite:///{tmp_path}/a.db"))
    accounts.add("alice", "viewer", PASSWORD)
    for _ in range(MAX_FAILURES * 2):
        assert accounts.login("alice", PASSWORD, "1.2.3.4") is not None
    for _ in range(MAX_FAILURES - 1):
        assert accounts.login("alice", "wrong password", "1.2.3.4") is None
    assert accounts.login("alice", PASSWORD, "1.2.3.4") is not None  # 4 failures: not locked yet
    assert accounts.login("alice", "wrong password", "1.2.3.4") is None
    assert accounts.login("alice", PASSWORD, "1.2.3.4") is None  # 5: locked
    assert accounts.login("alice", PASSWORD, "5.6.7.8") is not None  # per client address


def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_500(tmp_path):
    """secrets.compare_digest raises TypeError on a str with non-ASCII characters: a forged token such
    as "é" made the login form and every CSRF-checked POST answer 500 instead of refusing it."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    open_store(dsn).close()
    server = LiveDashboard(dsn)
    try:
        anonymous = requests.Session()
        anonymous.get(server.url + "/login")
        r = anonymous.post(server.url + "/login", data={"username": "officer", "password": PASSWORD, "csrf": "é"},
                           allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?error=expired"
        session = server.login("officer")
        for path, data in (("/logout", {}), ("/api/verify", {}), ("/settings", {}), ("/forensic/capture",
                           {"enabled": "true"}), ("/export/bundle", {}), ("/forensic/body/1", {}),
                           ("/api/forensic/bodies/1/read", {}), ("/api/settings", {"verify.interval_s": "60"})):
            r = session.post(server.url + path, data={**data, "csrf": "jeton-forgé"}, allow_redirects=False)
            assert r.status_code == 403, (path, r.status_code)
        r = session.post(server.url + "/api/settings", json={"verify.interval_s": 60},
                         headers={"X-CSRF-Token": b"\xe9\xff"})
        assert r.status_code == 403
    finally:
        server.stop()
