"""The admin console's first slice through the real stack (API.md 7,
10, 11, 12, 15; D7, D31): /admin/login, /admin, /admin/logout,
/admin/dashboard and /admin/api/stats, on a copy of the Go server's data
directory whose config.yml has the administrator `admin`.

The acceptance line this file proves: a user session cannot open admin
pages and the reverse. Besides that: sign-in with its CSRF, rate limit
and exact-name bcrypt check; the admin cookies (Path /admin); escaping of
stored values on the dashboard; the statistics object against the
database; logout ending the session; sessions surviving a restart; and
sessions ending when their admin leaves config.yml or gets a new
password (by hand edit, by the CLI, or across a restart).

Helpers (the browser-like Client, the stack on the fixture, page and
JSON checks) come from test_accounts.py.
"""
import os
import re
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cli, run_tests  # noqa: E402
from test_accounts import (HOSTILE, HOSTILE_ESC, MANIFEST, Client,  # noqa: E402
                           db, expect_json, expect_page, hidden, make_stack,
                           sha, text)

ADMIN = MANIFEST["admin"]["username"]
ADMIN_PW = MANIFEST["admin"]["password"]
ALICE_PW = MANIFEST["users"]["alice"]["password"]

STATS_KEYS = {
    "users", "active_users", "blocked_users", "unconfirmed_users",
    "active_devices", "revoked_devices", "vaults", "operations",
    "operations_24h", "blobs", "blob_references", "orphan_blobs",
    "temp_uploads", "expired_sessions", "expired_email_tokens",
    "audit_events", "database_bytes", "blob_bytes", "last_sync_activity",
    "last_cleanup_at",
}
SESSION_REQUIRED = {"error": "session required", "code": "unauthorized"}
HEX64 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------
# Helpers


def admin_login(c, user=ADMIN, password=ADMIN_PW):
    """Signs c in to the console; returns (session token, CSRF token)."""
    r = c.post_form("/admin/login", {"username": user, "password": password})
    assert r.status == 303 and r.header("location") == "/admin/dashboard", r
    assert r.header("cache-control") == "no-store"
    return c.cookies["admin_session"], c.cookies["csrf_token"]


def user_login(c, name="alice", password=ALICE_PW):
    c.web_login(name, password)
    return c.cookies["user_session"], c.cookies["csrf_token"]


def get_as(c, path, **cookies):
    """GET with exactly these cookies (nothing from c's jar)."""
    return c.get(path, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})


def post_as(c, path, form, **cookies):
    return c.post(path, form=form, headers={
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})


def expect_login_redirect(r):
    assert r.status == 302 and r.header("location") == "/admin/login", r
    assert r.header("cache-control") == "no-store", r.headers


def dashboard_opens(c, token):
    r = get_as(c, "/admin/dashboard", admin_session=token)
    if r.status == 200:
        expect_page(r, 200)
        return True
    expect_login_redirect(r)
    return False


def admin_session_rows(s):
    with db(s) as con:
        return con.execute("SELECT token_hash, csrf_hash, subject_id FROM server_sessions "
                           "WHERE scope = 'admin'").fetchall()


def config_path(s):
    return os.path.join(s.data, "config.yml")


def read_config(s):
    with open(config_path(s)) as f:
        return f.read()


def write_config(s, content, atomic=True):
    """Writes config.yml the way an operator's tool might: atomically
    (temp file + rename, like the servers) or in place."""
    path = config_path(s)
    if atomic:
        tmp = path + ".edit"
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(content)


def new_hash(s, password):
    """A bcrypt hash of password, made by the server's own CLI in a
    scratch data directory."""
    d = os.path.join(s.tmp, "hash-" + sha(password)[:8])
    r = run_cli(["--data", d, "--admin-user", "scratch", "--admin-pass", password,
                 "--init-admin"])
    assert r.returncode == 0, r.stderr
    with open(os.path.join(d, "config.yml")) as f:
        m = re.search(r"password_hash: (\S+)", f.read())
    assert m and m.group(1).startswith("$2"), m
    return m.group(1)


def stored_hash(s):
    m = re.search(r"password_hash: (\S+)", read_config(s))
    assert m, read_config(s)
    return m.group(1)


def db_stats(s):
    """The figures of API.md 15 that the database alone decides,
    computed here independently of the server."""
    con = sqlite3.connect(os.path.join(s.data, "server.db"), timeout=10)
    try:
        one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
        return {
            "users": one("SELECT count(*) FROM server_users"),
            "active_users": one("SELECT count(*) FROM server_users "
                                "WHERE confirmed = 1 AND blocked = 0"),
            "blocked_users": one("SELECT count(*) FROM server_users WHERE blocked = 1"),
            "unconfirmed_users": one("SELECT count(*) FROM server_users WHERE confirmed = 0"),
            "active_devices": one("SELECT count(*) FROM server_devices "
                                  "WHERE coalesce(revoked_at, '') = ''"),
            "revoked_devices": one("SELECT count(*) FROM server_devices "
                                   "WHERE coalesce(revoked_at, '') <> ''"),
            "vaults": len(con.execute(
                "SELECT DISTINCT user_id, vault_id FROM server_devices WHERE "
                "coalesce(user_id, '') <> '' AND coalesce(vault_id, '') <> ''").fetchall()),
            "operations": one("SELECT count(*) FROM server_ops"),
            "blobs": one("SELECT count(*) FROM server_blobs"),
            "blob_references": one("SELECT count(*) FROM server_blob_refs"),
            "orphan_blobs": one("SELECT count(*) FROM server_blobs b WHERE NOT EXISTS "
                                "(SELECT 1 FROM server_blob_refs r WHERE r.sha256 = b.sha256)"),
            "audit_events": one("SELECT count(*) FROM server_audit_log"),
            "blob_bytes": one("SELECT coalesce(sum(size), 0) FROM server_blobs"),
            "last_sync_activity": one("SELECT coalesce(max(last_seen), '') FROM "
                                      "server_devices WHERE coalesce(last_seen, '') <> ''"),
        }
    finally:
        con.close()


# One stack for the tests that do not restart it or edit config.yml.
# Besides the fixture's admin it has one admin per test: the `login` rate
# limit counts every sign-in per user name (10 per 10 minutes).
STACK = None
OPS = ("ops-rate", "ops-dash", "ops-scope", "ops-logout")


def ops_password(name):
    return name + "-password"


def stack():
    global STACK
    if STACK is None:
        s = make_stack()
        for name in OPS:
            r = run_cli(["--data", s.data, "--admin-user", name, "--admin-pass",
                         ops_password(name), "--init-admin"])
            assert r.returncode == 0, r.stderr
        STACK = s.start()
    return STACK


def ops_login(c, name):
    return admin_login(c, name, ops_password(name))


# ---------------------------------------------------------------------------
# Sign-in


def test_login_page_and_successful_login():
    s = stack()
    c = Client(s)
    r = c.get("/admin/login")
    page = expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    assert 'action="/admin/login"' in page
    assert hidden(page, "locale_csrf") == c.cookies["verstak_locale_csrf"]
    for name in ('name="username"', 'name="password"'):
        assert name in page
    # The console's navigation, not the people's.
    assert 'href="/register"' not in page and 'action="/logout"' not in page

    r = c.post_form("/admin/login", {"username": ADMIN, "password": ADMIN_PW})
    assert r.status == 303 and r.header("location") == "/admin/dashboard", r
    assert r.header("cache-control") == "no-store"
    tok, csrf = c.cookies["admin_session"], c.cookies["csrf_token"]
    assert HEX64.fullmatch(tok) and HEX64.fullmatch(csrf) and tok != csrf
    # API.md 11: Path /admin for both; no user cookie is set.
    assert sorted(c.last_set_cookies) == sorted([
        f"admin_session={tok}; Path=/admin; Max-Age=86400; HttpOnly; SameSite=Lax",
        f"csrf_token={csrf}; Path=/admin; Max-Age=86400; SameSite=Strict"]), \
        c.last_set_cookies
    # Stored as hashes only, scope admin, subject = the user name.
    with db(s) as con:
        row = con.execute("SELECT csrf_hash, scope, subject_id, expires_at, created_at "
                          "FROM server_sessions WHERE token_hash = ?", (sha(tok),)).fetchone()
        assert con.execute("SELECT count(*) FROM server_sessions WHERE token_hash = ? "
                           "OR csrf_hash = ?", (tok, csrf)).fetchone()[0] == 0
    assert row[:3] == (sha(csrf), "admin", ADMIN), row

    # GET /admin/login with the session goes to the dashboard; /admin too.
    r = c.get("/admin/login")
    assert r.status == 302 and r.header("location") == "/admin/dashboard", r
    assert r.header("cache-control") == "no-store"
    r = c.get("/admin")
    assert r.status == 302 and r.header("location") == "/admin/dashboard", r
    assert r.header("cache-control") == "no-store"
    r = c.get("/admin/dashboard")
    page = expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    assert hidden(page, "csrf_token") == csrf          # the sign-out form
    assert 'action="/admin/logout"' in page
    assert re.search(r'class="admin-name">admin<', page), page[:2000]
    # Without a session: pages go to the login page, JSON is 401 (D7).
    anon = Client(s)
    expect_login_redirect(anon.get("/admin/dashboard"))
    r = anon.get("/admin/api/stats")
    assert expect_json(r, 401) == SESSION_REQUIRED
    assert r.header("cache-control") == "no-store"
    r = anon.get("/admin")
    assert r.status == 302 and r.header("location") == "/admin/dashboard"
    expect_page(anon.get("/admin/"), 404)       # unmatched (API.md 1.6)


def test_wrong_credentials_are_401():
    s = stack()
    c = Client(s)
    for user, pw in ((ADMIN, "wrong-password"), ("nobody", ADMIN_PW),
                     ("Admin", ADMIN_PW), (" admin", ADMIN_PW), (ADMIN, ""),
                     (HOSTILE, "x")):
        r = c.post_form("/admin/login", {"username": user, "password": pw})
        page = expect_page(r, 401)
        assert r.header("cache-control") == "no-store"
        assert "Wrong user name or password" in page, page
        assert "admin_session" not in c.cookies and "csrf_token" not in c.cookies
        assert not [x for x in c.last_set_cookies if not x.startswith("verstak_locale_csrf=")]
        if user == HOSTILE:
            # The name typed is shown back, escaped.
            assert HOSTILE not in page and "<script>alert" not in page
            assert HOSTILE_ESC in page
    # The flash comes in the request's language.
    r = Client(s, lang="ru").post_form("/admin/login", {"username": ADMIN,
                                                        "password": "wrong-password"})
    assert "Неверное имя пользователя" in expect_page(r, 401)
    assert not [row for row in admin_session_rows(s)
                if row[2] != ADMIN], admin_session_rows(s)


def test_login_without_csrf_is_403():
    s = stack()
    c = Client(s)
    anon = c.anon_csrf()
    f = {"username": ADMIN, "password": ADMIN_PW}
    before = len(admin_session_rows(s))
    # No field; a wrong field; the right field from a foreign origin;
    # the right field but no cookie.
    for extra, hdrs, jar in (({}, {}, True),
                             ({"locale_csrf": "0" * 64}, {}, True),
                             ({"locale_csrf": anon}, {"Origin": "http://evil.example"}, True),
                             ({"locale_csrf": anon}, {}, False)):
        cl = c if jar else Client(s)
        r = cl.post("/admin/login", form=dict(f, **extra), headers=hdrs)
        page = expect_page(r, 403)
        assert "reload the page" in page, extra
        assert r.header("cache-control") == "no-store"
        assert "admin_session" not in cl.cookies
    assert len(admin_session_rows(s)) == before
    # A body that does not parse: the 400 page.
    r = c.post("/admin/login", body="a=%zz",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect_page(r, 400)


def test_login_rate_limit_by_ip_and_by_username():
    s = stack()
    # 10 per 10 minutes per IP: the 11th attempt is the 429 page.
    c = Client(s)
    for i in range(10):
        expect_page(c.post_form("/admin/login", {"username": f"x{i}", "password": "p"}), 401)
    r = c.post_form("/admin/login", {"username": ADMIN, "password": ADMIN_PW})
    page = expect_page(r, 429)
    assert int(r.header("retry-after")) >= 1 and "Too many attempts" in page
    assert r.header("cache-control") == "no-store"
    assert "admin_session" not in c.cookies
    # The account bucket is the user name as typed: new IPs, one name.
    for i in range(10):
        expect_page(Client(s).post_form("/admin/login", {"username": "rl-admin",
                                                         "password": "p"}), 401)
    expect_page(Client(s).post_form("/admin/login", {"username": "rl-admin",
                                                     "password": "p"}), 429)
    # ...while an admin from a fresh IP still gets in.
    ops_login(Client(s), "ops-rate")


def test_methods_and_no_store():
    s = stack()
    c = Client(s)
    for method, path, allow in (("PUT", "/admin/login", "GET, POST"),
                                ("POST", "/admin", "GET"),
                                ("GET", "/admin/logout", "POST"),
                                ("POST", "/admin/dashboard", "GET"),
                                ("DELETE", "/admin/api/stats", "GET")):
        r = c.request(method, path)
        expect_json(r, 405, "method_not_allowed")
        assert r.header("allow") == allow, (path, r.header("allow"))
        assert r.header("cache-control") == "no-store", path
        assert r.header("content-security-policy").startswith("default-src 'self'")


# ---------------------------------------------------------------------------
# Dashboard and statistics


def test_dashboard_escapes_stored_values_and_shows_stats():
    s = stack()
    u = Client(s)
    # A device with hostile name, vault and version, paired as the
    # desktop does (it is then the newest device and audit row).
    r = s.post("/api/client/pair", {"login": "alice", "password": ALICE_PW,
                                    "device_name": HOSTILE, "client_version": HOSTILE,
                                    "vault_id": HOSTILE},
               headers={"X-Forwarded-For": u.ip})
    assert r.status == 200, r
    c = Client(s)
    ops_login(c, "ops-dash")
    r = c.get("/admin/dashboard")
    page = expect_page(r, 200)
    assert HOSTILE not in page and "<script>alert" not in page
    # device name, vault, version, and the audit message "device paired: <name>"
    assert page.count(HOSTILE_ESC) >= 4, page
    assert "device paired: " + HOSTILE_ESC in page
    assert r.header("cache-control") == "no-store"
    # Readiness and the warning for the unset SMTP host.
    assert 'class="badge badge-ok">Ready<' in page
    assert "No SMTP host is configured" in page
    assert "more than 100 000 operations" not in page
    # At most 5 audit rows and 5 devices, newest first.
    assert 1 <= page.count('class="audit-row"') <= 5
    assert 1 <= page.count('class="device-row"') <= 5
    first_device = page.index('class="device-row"')
    assert page.index(HOSTILE_ESC, first_device) < page.index("</tr>", first_device)

    want = db_stats(s)
    r = c.get("/admin/api/stats")
    j = expect_json(r, 200)
    assert r.header("cache-control") == "no-store"
    assert set(j) == STATS_KEYS, set(j) ^ STATS_KEYS
    for k, v in j.items():
        assert isinstance(v, str if k in ("last_sync_activity", "last_cleanup_at") else int), (k, v)
        assert not isinstance(v, bool)
    for k, v in want.items():
        assert j[k] == v, (k, j[k], v)
    assert j["operations_24h"] <= j["operations"]
    assert j["temp_uploads"] == len([n for n in os.listdir(os.path.join(s.data, "blobs"))
                                     if n.startswith(".upload-")])
    assert j["database_bytes"] == os.path.getsize(os.path.join(s.data, "server.db"))
    assert j["active_users"] >= 2 and j["revoked_devices"] >= 1 and j["blobs"] == 3
    # The page shows the same figures.
    for k in ("users", "active_devices", "operations", "blobs", "audit_events"):
        assert f'data-stat="{k}">{j[k]}<' in page, k


def test_dashboard_warnings():
    s = make_stack().start()
    try:
        c = Client(s)
        admin_login(c)
        now = time.time()
        recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        old = "2020-01-01T00:00:00Z"
        with db(s) as con:
            con.execute("INSERT OR REPLACE INTO server_smtp_config (key, value) "
                        "VALUES ('smtp_host', 'mail.example.org')")
            dev = con.execute("SELECT id FROM server_devices LIMIT 1").fetchone()[0]
            # 100 001 ops the client dates now but the server received
            # long ago, and 3 the other way round (D34: pushed_at counts).
            con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < ?) INSERT INTO server_ops (op_id, server_sequence, "
                        "user_id, vault_id, device_id, entity_type, entity_id, op_type, "
                        "payload_json, idempotency_key, created_at, pushed_at) SELECT "
                        "'bulk-' || i, NULL, 'u', 'v', ?, 'file', 'e' || i, 'create', '', '', "
                        "?, ? FROM n", (100001, dev, recent, old))
            con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < 3) INSERT INTO server_ops (op_id, server_sequence, "
                        "user_id, vault_id, device_id, entity_type, entity_id, op_type, "
                        "payload_json, idempotency_key, created_at, pushed_at) SELECT "
                        "'fresh-' || i, NULL, 'u', 'v', ?, 'file', 'f' || i, 'create', '', '', "
                        "?, ? FROM n", (dev, old, recent))
            cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400))
            want_24h = con.execute("SELECT count(*) FROM server_ops WHERE pushed_at >= ?",
                                   (cutoff,)).fetchone()[0]
        page = expect_page(c.get("/admin/dashboard"), 200)
        assert "No SMTP host is configured" not in page
        assert "more than 100 000 operations" in page
        assert "The server is degraded" not in page
        j = expect_json(c.get("/admin/api/stats"), 200)
        assert j["operations"] > 100000
        assert j["operations_24h"] == want_24h and want_24h >= 3, (j, want_24h)

        # Degraded readiness: blobs/ is not a directory any more (this
        # fails even for root). The blob probe is cached for 5 s (D38).
        blobs = os.path.join(s.data, "blobs")
        os.rename(blobs, blobs + ".away")
        try:
            with open(blobs, "w") as f:
                f.write("not a directory")
            time.sleep(5.5)
            page = expect_page(c.get("/admin/dashboard"), 200)
            assert "The server is degraded" in page
            assert 'class="badge badge-err">Degraded<' in page
        finally:
            os.unlink(blobs)
            os.rename(blobs + ".away", blobs)
    finally:
        s.cleanup()


# ---------------------------------------------------------------------------
# The acceptance line: a user session cannot open admin pages and the reverse


def test_user_session_cannot_open_admin_and_reverse():
    s = stack()
    u = Client(s)
    user_tok, user_csrf = user_login(u)
    a = Client(s)
    admin_tok, admin_csrf = ops_login(a, "ops-scope")
    x = Client(s)       # a third browser that carries borrowed cookies

    # Each works in its own place.
    assert dashboard_opens(x, admin_tok)
    r = get_as(x, "/dashboard", user_session=user_tok)
    assert "alice@example.org" in expect_page(r, 200)

    # A USER token in admin_session: admin pages send to the admin login
    # page, admin JSON is 401, the login page does not skip the form.
    for cookies in ({"admin_session": user_tok},
                    {"admin_session": user_tok, "csrf_token": user_csrf},
                    {"user_session": user_tok, "csrf_token": user_csrf}):
        expect_login_redirect(get_as(x, "/admin/dashboard", **cookies))
        r = get_as(x, "/admin/api/stats", **cookies)
        assert expect_json(r, 401) == SESSION_REQUIRED
        r = get_as(x, "/admin/login", **cookies)
        assert "admin-login-form" in expect_page(r, 200)
        # ...and cannot even sign out of the console.
        expect_login_redirect(post_as(x, "/admin/logout", {"csrf_token": user_csrf},
                                      **cookies))
    # An ADMIN token in user_session: /dashboard sends to /login (API.md
    # 5), the user JSON is 401, /login shows its form.
    for cookies in ({"user_session": admin_tok},
                    {"user_session": admin_tok, "csrf_token": admin_csrf},
                    {"admin_session": admin_tok}):
        r = get_as(x, "/dashboard", **cookies)
        assert r.status == 302 and r.header("location") == "/login", (cookies, r)
        r = get_as(x, "/api/v1/user/devices", **cookies)
        assert expect_json(r, 401) == SESSION_REQUIRED
        r = get_as(x, "/login", **cookies)
        assert "login-form" in expect_page(r, 200)
        r = post_as(x, "/logout", {"csrf_token": admin_csrf}, **cookies)
        assert r.status == 302 and r.header("location") == "/login", r

    # None of that ended or changed either session.
    assert dashboard_opens(x, admin_tok)
    assert get_as(x, "/dashboard", user_session=user_tok).status == 200
    with db(s) as con:
        rows = dict(con.execute("SELECT token_hash, scope FROM server_sessions WHERE "
                                "token_hash IN (?, ?)", (sha(user_tok), sha(admin_tok))))
    assert rows == {sha(user_tok): "user", sha(admin_tok): "admin"}, rows

    # Both at once, as a browser holding both sessions sends them: each
    # area sees only its own (the /admin csrf_token comes first, API.md 11).
    both = {"admin_session": admin_tok, "user_session": user_tok}
    assert "admin-name" in expect_page(get_as(x, "/admin/dashboard", **both), 200)
    page = expect_page(get_as(x, "/dashboard", **both), 200)
    assert "alice@example.org" in page and "admin-name" not in page
    r = post_as(x, "/admin/logout", {"csrf_token": admin_csrf},
                csrf_token=admin_csrf, **both)
    assert r.status == 303 and r.header("location") == "/admin/login", r
    assert get_as(x, "/dashboard", user_session=user_tok).status == 200
    expect_login_redirect(get_as(x, "/admin/dashboard", admin_session=admin_tok))


# ---------------------------------------------------------------------------
# Sessions end


def test_logout_ends_the_session():
    s = stack()
    c = Client(s)
    tok, csrf = ops_login(c, "ops-logout")
    r = c.post("/admin/logout", form={})
    expect_json(r, 403, "csrf_invalid", "CSRF token is invalid")
    r = c.post("/admin/logout", form={"csrf_token": "0" * 64})
    expect_json(r, 403, "csrf_invalid", "CSRF token is invalid")
    r = post_as(c, "/admin/logout", {"csrf_token": csrf}, admin_session=tok)
    expect_json(r, 403, "csrf_invalid", "CSRF token is required")
    r = c.post("/admin/logout", form={"csrf_token": csrf},
               headers={"Origin": "http://evil.example"})
    expect_json(r, 403, "csrf_invalid", "request origin is not allowed")
    assert dashboard_opens(c, tok)
    # The header works as well as the field (API.md 10.1).
    r = c.post("/admin/logout", form={}, headers={"X-CSRF-Token": csrf, "Origin": s.public})
    assert r.status == 303 and r.header("location") == "/admin/login", r
    assert r.header("cache-control") == "no-store"
    assert sorted(c.last_set_cookies) == sorted([
        "admin_session=; Path=/admin; Max-Age=0; HttpOnly",
        "csrf_token=; Path=/admin; Max-Age=0"]), c.last_set_cookies
    # Gone from the database, not just from the browser.
    with db(s) as con:
        assert con.execute("SELECT count(*) FROM server_sessions WHERE token_hash = ?",
                           (sha(tok),)).fetchone()[0] == 0
    assert not dashboard_opens(c, tok)
    assert expect_json(get_as(c, "/admin/api/stats", admin_session=tok), 401) == \
        SESSION_REQUIRED
    expect_login_redirect(post_as(c, "/admin/logout", {"csrf_token": csrf},
                                  admin_session=tok, csrf_token=csrf))
    # Another sign-in makes a new session; logout ends only its own.
    t1, _ = ops_login(Client(s), "ops-logout")
    t2, c2 = ops_login(Client(s), "ops-logout")
    r = post_as(c, "/admin/logout", {"csrf_token": c2}, admin_session=t2, csrf_token=c2)
    assert r.status == 303
    assert dashboard_opens(c, t1) and not dashboard_opens(c, t2)


def test_session_survives_restart():
    s = make_stack().start()
    try:
        c = Client(s)
        tok, csrf = admin_login(c)
        s.stop()
        s.start()
        # The session is a row of server.db: any new worker accepts it.
        for _ in range(4):
            assert dashboard_opens(c, tok)
        expect_json(get_as(c, "/admin/api/stats", admin_session=tok), 200)
        r = c.post("/admin/logout", form={"csrf_token": csrf})
        assert r.status == 303, r
        assert not dashboard_opens(c, tok)
    finally:
        s.cleanup()


def test_admin_removed_or_repassworded_ends_sessions():
    s = make_stack().start()
    try:
        c = Client(s)
        original = read_config(s)
        old_hash = stored_hash(s)

        # A rewrite that keeps the admin as it is ends nothing.
        tok, _ = admin_login(c)
        write_config(s, original + "\n")
        assert dashboard_opens(c, tok)

        # A new password written into config.yml by hand, no restart:
        # the session ends at its next request, and is deleted.
        pw2 = "second-admin-pass"
        write_config(s, original.replace(old_hash, new_hash(s, pw2)), atomic=False)
        assert not dashboard_opens(c, tok)
        assert expect_json(get_as(c, "/admin/api/stats", admin_session=tok), 401) == \
            SESSION_REQUIRED
        with db(s) as con:
            assert con.execute("SELECT count(*) FROM server_sessions WHERE token_hash = ?",
                               (sha(tok),)).fetchone()[0] == 0
        # The old password no longer signs in; the new one does.
        expect_page(Client(s).post_form("/admin/login", {"username": ADMIN,
                                                         "password": ADMIN_PW}), 401)
        tok2, _ = admin_login(Client(s), password=pw2)
        assert dashboard_opens(c, tok2)

        # Putting the old hash back does not revive the ended session.
        write_config(s, original)
        assert not dashboard_opens(c, tok) and not dashboard_opens(c, tok2)
        tok3, _ = admin_login(Client(s))

        # The CLI replacing the password ends the admin's sessions too.
        r = run_cli(["--data", s.data, "--admin-user", ADMIN, "--admin-pass",
                     "third-admin-pass", "--init-admin"])
        assert r.returncode == 0, r.stderr
        assert not dashboard_opens(c, tok3)
        tok4, _ = admin_login(Client(s), password="third-admin-pass")
        assert dashboard_opens(c, tok4)

        # The admin renamed in config.yml, then a restart (D31's own
        # test): its session is over, the new name signs in.
        s.stop()
        write_config(s, read_config(s).replace(f"username: {ADMIN}\n", "username: root\n"))
        s.start()
        assert not dashboard_opens(c, tok4)
        assert expect_json(get_as(c, "/admin/api/stats", admin_session=tok4), 401) == \
            SESSION_REQUIRED
        expect_page(Client(s).post_form("/admin/login", {
            "username": ADMIN, "password": "third-admin-pass"}), 401)
        tok5, _ = admin_login(Client(s), user="root", password="third-admin-pass")

        # Removed altogether while running: nobody is an admin.
        write_config(s, re.sub(r"admin:\n(    .*\n)+", "admin: []\n", read_config(s)))
        assert "username: root" not in read_config(s)
        assert not dashboard_opens(c, tok5)
        expect_page(Client(s).post_form("/admin/login", {
            "username": "root", "password": "third-admin-pass"}), 401)
        assert admin_session_rows(s) == []
    finally:
        s.cleanup()


def test_zz_stop_shared_stack():
    """Stops the shared stack (runs last: tests run in file order)."""
    global STACK
    if STACK is not None:
        st, STACK = STACK, None
        assert st.stop() == 0
        assert not st.leftovers()
        st.cleanup()


if __name__ == "__main__":
    try:
        run_tests(dict(globals()))
    finally:
        if STACK is not None:
            STACK.cleanup()
