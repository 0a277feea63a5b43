"""User accounts through the real stack: the JSON user API (API.md 4) and
the web pages (API.md 5) with their cookies, CSRF, sessions, locale,
rate limits and escaping, on a copy of the Go server's data directory.

Mail: the stack runs with development_token_logging and no SMTP host, so
the mail module writes each confirm/reset token to the log; the tests
read them from there (tokens are stored hashed, the database cannot give
them back). The parser accepts any line with "development token", the
kind and a 48-hex token or a link ending in one.

Rate limits are per client IP: the stack trusts 127.0.0.1 as a proxy and
each test sends its own X-Forwarded-For, so tests never share buckets.
"""
import hashlib
import html
import os
import re
import sqlite3
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack as _Stack  # noqa: E402
from harness import copy_fixture, free_port, load_manifest, run_cli, run_tests  # noqa: E402

HOSTILE = "<script>alert(1)</script>&\"'"
HOSTILE_ESC = html.escape(HOSTILE, quote=True).replace("&#x27;", "&#39;")
MANIFEST = load_manifest()
_ip_counter = [10]


def next_ip():
    _ip_counter[0] += 1
    return f"198.51.100.{_ip_counter[0]}"


# ---------------------------------------------------------------------------
# Stack and log helpers

# Log text that means a worker crashed or a sanitizer caught something
# (the stack replaces a dead worker, so HTTP answers alone would not
# show it).
BAD_LOG = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "; replacing")


class Stack(_Stack):
    """The harness's stack; cleanup fails the test on a bad log."""

    def cleanup(self):
        try:
            self.stop()
        except AssertionError:
            pass
        try:
            with open(os.path.join(self.tmp, "stack.log"), errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        super().cleanup()
        bad = [w for w in BAD_LOG if w in log]
        assert not bad, f"stack log shows {bad}:\n{log[-3000:]}"



def make_stack(allow_registration=True, extra_config=""):
    """A stack on a copy of the fixture with dev token logging on."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    s = Stack(port=port, env={"VERSTAK_TRUSTED_PROXIES": "127.0.0.1",
                              "VERSTAK_PUBLIC_URL": public})
    copy_fixture(s.data)
    path = os.path.join(s.data, "config.yml")
    with open(path) as f:
        cfg = f.read()
    if not allow_registration:
        cfg = cfg.replace("allow_registration: true", "allow_registration: false")
    cfg += "development_token_logging: true\n" + extra_config
    with open(path, "w") as f:
        f.write(cfg)
    s.public = public
    return s


def log_text(stack):
    with open(os.path.join(stack.tmp, "stack.log"), errors="replace") as f:
        return f.read()


TOKEN_RE = re.compile(r"(?:token=|[\s:])([0-9a-f]{48})\b")
EMAIL_RE = re.compile(r"([^\s:<>()\[\]]+@[^\s:<>()\[\]]+)")


def dev_tokens(stack):
    """(kind, email, token) of every development-token log line."""
    out = []
    for line in log_text(stack).splitlines():
        if "development token" not in line:
            continue
        m = TOKEN_RE.search(line)
        if not m:
            continue
        kind = "reset" if "reset" in line else "confirm"
        em = EMAIL_RE.search(line)
        out.append((kind, em.group(1).lower().rstrip(":") if em else "", m.group(1)))
    return out


def wait_token(stack, kind, email, before):
    """The first token of kind for email logged after the first
    `before` entries."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for k, e, t in dev_tokens(stack)[before:]:
            if k == kind and e == email.lower():
                return t
        time.sleep(0.05)
    raise AssertionError(f"no {kind} token for {email} in the log:\n"
                         + stack.stderr())


def db(stack):
    return sqlite3.connect(os.path.join(stack.data, "server.db"), timeout=10)


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


# ---------------------------------------------------------------------------
# A browser-like client: a cookie jar, its own client IP, a language


class Client:
    def __init__(self, stack, lang=None, ip=None, https=False):
        self.s = stack
        self.ip = ip or next_ip()
        self.lang = lang
        self.https = https
        self.cookies = {}
        self.last_set_cookies = []

    def request(self, method, path, body=None, form=None, headers=None):
        h = {"X-Forwarded-For": self.ip}
        if self.https:
            h["X-Forwarded-Proto"] = "https"
        if self.lang:
            h["Accept-Language"] = self.lang
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers or {})
        r = self.s.request(method, path, body=body, headers=h)
        self.last_set_cookies = r.headers_named("set-cookie")
        for sc in self.last_set_cookies:
            name, _, rest = sc.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in sc:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def anon_csrf(self):
        if "verstak_locale_csrf" not in self.cookies:
            r = self.get("/login")
            assert r.status == 200, r
        return self.cookies["verstak_locale_csrf"]

    def post_form(self, path, fields, csrf=True):
        f = dict(fields)
        if csrf:
            f.setdefault("locale_csrf", self.anon_csrf())
        return self.post(path, form=f)

    def web_login(self, login, password):
        r = self.post_form("/login", {"username": login, "password": password})
        assert r.status == 303 and r.header("location") == "/dashboard", r
        return r

    def logout(self):
        return self.post("/logout", form={"csrf_token": self.cookies.get("csrf_token", "")})


def text(r):
    return r.body.decode()


def hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    assert m, f"no hidden field {name}"
    return html.unescape(m.group(1))


def expect_json(r, status, code=None, error=None):
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/json", r.headers
    j = r.json()
    if code is not None:
        assert j.get("code") == code, j
    if error is not None:
        assert j.get("error") == error, j
    return j


def expect_page(r, status):
    assert r.status == status, (r.status, r.body[:300])
    assert r.header("content-type") == "text/html; charset=utf-8", r.headers
    body = text(r)
    assert body.startswith("<!doctype html>"), body[:100]
    assert "<script>" not in body and "style=" not in body
    return body


def json_register(c, name, email, pw="a-good-password"):
    return c.post("/api/v1/auth/register",
                  {"username": name, "email": email, "password": pw})


def register_and_confirm(s, c, name, email, pw="a-good-password"):
    before = len(dev_tokens(s))
    r = json_register(c, name, email, pw)
    assert r.status == 200 and r.json() == {"status": "confirmation_sent"}, r
    tok = wait_token(s, "confirm", email, before)
    r = c.post("/api/v1/auth/confirm", {"token": tok})
    assert r.status == 200 and r.json() == {"status": "confirmed"}, r
    return tok


# One stack for most tests (each test uses its own users and IPs).
STACK = None


def stack():
    global STACK
    if STACK is None:
        STACK = make_stack().start()
    return STACK


# ---------------------------------------------------------------------------
# JSON user API (API.md 4)


def test_json_register_confirm_login():
    s = stack()
    c = Client(s)
    before = len(dev_tokens(s))
    r = json_register(c, "  jay  ", "Jay@Example.ORG", "jay-password-1")
    assert r.status == 200 and r.json() == {"status": "confirmation_sent"}, r
    tok = wait_token(s, "confirm", "jay@example.org", before)   # D2: mail sent
    with db(s) as con:
        row = con.execute("SELECT username, email, confirmed, password_hash, id "
                          "FROM server_users WHERE username = 'jay'").fetchone()
        assert row[:3] == ("jay", "jay@example.org", 0), row
        assert row[3].startswith("$2a$10$") or row[3].startswith("$2b$10$"), row
        toks = con.execute("SELECT token_hash, purpose, expires_at, created_at "
                           "FROM server_email_tokens WHERE user_id = ?",
                           (row[4],)).fetchall()
    # Stored as SHA-256 only, 48 h.
    assert [(t[0], t[1]) for t in toks] == [(sha(tok), "confirm")], toks
    made = time.mktime(time.strptime(toks[0][3], "%Y-%m-%dT%H:%M:%SZ"))
    exp = time.mktime(time.strptime(toks[0][2], "%Y-%m-%dT%H:%M:%SZ"))
    assert exp - made == 48 * 3600

    expect_json(c.post("/api/v1/auth/login", {"username": "jay",
                                              "password": "jay-password-1"}),
                403, "forbidden", "email not confirmed")
    # GET shows a form and confirms nothing (mail scanners are harmless).
    r = c.get("/api/v1/auth/confirm?token=" + tok)
    page = expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    assert hidden(page, "token") == tok
    assert hidden(page, "locale_csrf") == c.cookies["verstak_locale_csrf"]
    assert 'action="/api/v1/auth/confirm"' in page
    with db(s) as con:
        assert con.execute("SELECT confirmed FROM server_users WHERE username='jay'"
                           ).fetchone()[0] == 0
    expect_page(c.get("/api/v1/auth/confirm?token="), 400)
    expect_json(c.post("/api/v1/auth/confirm", {"token": ""}), 400,
                "invalid_request", "token required")
    expect_json(c.post("/api/v1/auth/confirm", {"token": "0" * 48}), 400,
                "invalid_request", "invalid or expired token")
    expect_json(c.post("/api/v1/auth/confirm", {"token": tok}), 200)
    expect_json(c.post("/api/v1/auth/confirm", {"token": tok}), 400,
                "invalid_request", "invalid or expired token")   # used

    r = c.post("/api/v1/auth/login", {"username": "JAY@example.org",
                                      "password": "jay-password-1"})
    j = expect_json(r, 200)
    assert set(j) == {"token", "user_id"} and len(j["token"]) == 64, j
    assert not r.headers_named("set-cookie")
    with db(s) as con:
        row = con.execute("SELECT last_seen FROM server_users WHERE id = ?",
                          (j["user_id"],)).fetchone()
        assert row[0], "JSON login sets last_seen"
        srow = con.execute("SELECT scope, subject_id FROM server_sessions "
                           "WHERE token_hash = ?", (sha(j["token"]),)).fetchone()
        assert srow == ("user", j["user_id"]), srow
    # The token works as a user_session cookie where no CSRF is needed.
    r = c.get("/api/v1/user/devices", headers={"Cookie": "user_session=" + j["token"]})
    assert expect_json(r, 200) == []
    assert r.body == b"[]\n"
    r = c.get("/dashboard", headers={"Cookie": "user_session=" + j["token"]})
    assert "jay" in expect_page(r, 200)
    assert r.header("cache-control") == "no-store"


def test_json_register_rules():
    s = stack()
    c = Client(s)
    reg = "/api/v1/auth/register"
    expect_json(c.post(reg, {"username": "x", "email": "", "password": "p"}),
                400, "invalid_request", "username, email and password required")
    expect_json(c.post(reg, {"username": "a\nb", "email": "ab@example.org",
                             "password": "long-enough"}),
                400, "invalid_request", "invalid username")
    expect_json(c.post(reg, {"username": "x" * 129, "email": "ab@example.org",
                             "password": "long-enough"}),
                400, "invalid_request", "invalid username")
    expect_json(c.post(reg, {"username": "ab", "email": "AB <ab@example.org>",
                             "password": "long-enough"}),
                400, "invalid_request", "invalid email")
    expect_json(c.post(reg, {"username": "ab", "email": "ab@example.org",
                             "password": "short"}),
                400, "invalid_request", "PASSWORD_TOO_SHORT")
    # D30: 73 bytes is too long (Cyrillic letters are two bytes each).
    expect_json(c.post(reg, {"username": "ab", "email": "ab@example.org",
                             "password": "я" * 36 + "x"}),
                400, "invalid_request", "PASSWORD_TOO_LONG")
    expect_json(c.post(reg, {"username": 5}), 400, "invalid_json")
    expect_json(c.post(reg, b"{} {}"), 400, "trailing_json")
    r = c.get(reg)
    expect_json(r, 405, "method_not_allowed")
    assert r.header("allow") == "POST"
    # Taken (D29, D39): same name, same e-mail, name = someone's e-mail.
    c2 = Client(s)
    expect_json(json_register(c2, "alice", "new-alice@example.org"), 409,
                "conflict", "username or email already taken")
    expect_json(json_register(c2, "alice2", "ALICE@example.org"), 409, "conflict")
    expect_json(json_register(c2, "bob@example.org", "bob2@example.org"), 409,
                "conflict")
    with db(s) as con:
        assert con.execute("SELECT count(*) FROM server_users WHERE username IN "
                           "('ab', 'alice2', 'bob@example.org')").fetchone()[0] == 0


def test_login_exact_name_beats_email():
    """D29: rows the reference could hold (A's user name is B's e-mail):
    that login is A's, deterministically; a login that is not an exact
    name goes to the e-mail step; such a name cannot be registered now."""
    s = stack()
    c = Client(s)
    register_and_confirm(s, c, "dz-a", "dz-a@example.org", "dz-a-password")
    register_and_confirm(s, c, "dz-b", "b-dz@example.org", "dz-b-password")
    with db(s) as con:
        con.execute("UPDATE server_users SET username = 'b-dz@example.org' "
                    "WHERE username = 'dz-a'")
        ids = dict(con.execute("SELECT email, id FROM server_users WHERE email IN "
                               "('dz-a@example.org', 'b-dz@example.org')"))
    a, b = ids["dz-a@example.org"], ids["b-dz@example.org"]
    for _ in range(3):
        r = c.post("/api/v1/auth/login", {"username": "b-dz@example.org",
                                          "password": "dz-a-password"})
        assert expect_json(r, 200)["user_id"] == a
    # The exact name wins even with B's password: no fallback to B.
    expect_json(c.post("/api/v1/auth/login", {"username": "b-dz@example.org",
                                              "password": "dz-b-password"}),
                401, "unauthorized", "invalid credentials")
    # Not an exact name (case differs): the lowercased e-mail finds B.
    r = c.post("/api/v1/auth/login", {"username": "B-DZ@example.org",
                                      "password": "dz-b-password"})
    assert expect_json(r, 200)["user_id"] == b
    expect_json(json_register(Client(s), "dz-a@example.org", "dz-c@example.org"),
                409, "conflict", "username or email already taken")


def test_fixture_users_log_in_with_manifest_passwords():
    s = stack()
    c = Client(s)
    users = MANIFEST["users"]
    for name in ("alice", "bob"):
        r = c.post("/api/v1/auth/login", {"username": name,
                                          "password": users[name]["password"]})
        assert expect_json(r, 200)["user_id"] == users[name]["id"]
    # An e-mail works as the login too.
    r = c.post("/api/v1/auth/login", {"username": "ALICE@example.org",
                                      "password": users["alice"]["password"]})
    expect_json(r, 200)
    expect_json(c.post("/api/v1/auth/login", {"username": "carol",
                                              "password": users["carol"]["password"]}),
                403, "forbidden", "email not confirmed")
    expect_json(c.post("/api/v1/auth/login", {"username": "dave",
                                              "password": users["dave"]["password"]}),
                403, "forbidden", "account blocked")
    # D28: the state is revealed only with the right password.
    expect_json(c.post("/api/v1/auth/login", {"username": "dave",
                                              "password": "wrong-password"}),
                401, "unauthorized", "invalid credentials")
    expect_json(c.post("/api/v1/auth/login", {"username": "nobody",
                                              "password": "wrong-password"}),
                401, "unauthorized", "invalid credentials")
    expect_json(c.post("/api/v1/auth/login", {"username": "alice"}),
                400, "invalid_request", "username and password required")
    # D28: an unknown login costs a bcrypt run like a known one, so the
    # answer times are of the same order (without the dummy run an
    # unknown name answers in about 1 ms, a known one in 50+ ms).
    t = Client(s)

    def took(login):
        t0 = time.monotonic()
        expect_json(t.post("/api/v1/auth/login", {"username": login,
                                                  "password": "wrong-password"}),
                    401, "unauthorized", "invalid credentials")
        return time.monotonic() - t0
    known = min(took("bob") for _ in range(3))
    unknown = min(took("nobody-at-all") for _ in range(3))
    assert unknown > known / 4 and known > unknown / 4, (known, unknown)
    # The web form: every failure is the same 401 page.
    w = Client(s)
    for name in ("carol", "dave"):
        r = w.post_form("/login", {"username": name,
                                   "password": users[name]["password"]})
        page = expect_page(r, 401)
        assert "Wrong user name or password" in page
        assert "user_session" not in w.cookies


def test_forgot_reset_and_sessions_end():
    s = stack()
    c = Client(s)
    register_and_confirm(s, c, "rita", "rita@example.org", "rita-password-1")
    old = c.post("/api/v1/auth/login", {"username": "rita",
                                        "password": "rita-password-1"}).json()["token"]
    w = Client(s)
    w.web_login("rita", "rita-password-1")
    assert w.get("/dashboard").status == 200

    # Unknown and known addresses get the same answer; only one mails.
    before = len(dev_tokens(s))
    r1 = c.post("/api/v1/auth/forgot", {"email": "nobody@example.org"})
    r2 = c.post("/api/v1/auth/forgot", {"email": "  RITA@example.org "})
    assert r1.status == r2.status == 200 and r1.body == r2.body, (r1, r2)
    assert r1.json() == {"status": "if email exists, reset link sent"}
    tok = wait_token(s, "reset", "rita@example.org", before)
    assert not [t for t in dev_tokens(s)[before:] if t[1] == "nobody@example.org"]
    with db(s) as con:
        exp, made = con.execute("SELECT expires_at, created_at FROM "
                                "server_email_tokens WHERE token_hash = ?",
                                (sha(tok),)).fetchone()
    assert (time.mktime(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")) -
            time.mktime(time.strptime(made, "%Y-%m-%dT%H:%M:%SZ"))) == 3600
    expect_json(c.post("/api/v1/auth/forgot", {"email": ""}), 400,
                "invalid_request", "email required")

    reset = "/api/v1/auth/reset"
    expect_json(c.post(reset, {"token": tok}), 400, "invalid_request",
                "token and new_password required")
    expect_json(c.post(reset, {"token": tok, "new_password": "short"}), 400,
                "invalid_request", "PASSWORD_TOO_SHORT")
    expect_json(c.post(reset, {"token": "f" * 48, "new_password": "rita-password-2"}),
                400, "invalid_request", "invalid or expired token")
    expect_json(c.post(reset, {"token": tok, "new_password": "rita-password-2"}), 200)
    # D10: every session of the user ended, JSON and web.
    expect_json(c.get("/api/v1/user/devices", headers={"Cookie": "user_session=" + old}),
                401, "unauthorized", "session required")
    r = w.get("/dashboard")
    assert r.status == 302 and r.header("location") == "/login", r
    # Used token refused; old password fails, new one works.
    expect_json(c.post(reset, {"token": tok, "new_password": "rita-password-3"}),
                400, "invalid_request", "invalid or expired token")
    expect_json(c.post("/api/v1/auth/login", {"username": "rita",
                                              "password": "rita-password-1"}), 401)
    expect_json(c.post("/api/v1/auth/login", {"username": "rita",
                                              "password": "rita-password-2"}), 200)

    # The web flow: forgot -> sent -> reset form -> done -> login.
    before = len(dev_tokens(s))
    r = w.post_form("/forgot", {"email": "Rita@Example.org"})
    assert r.status == 303 and r.header("location") == "/forgot/sent", r
    expect_page(w.get("/forgot/sent"), 200)
    tok = wait_token(s, "reset", "rita@example.org", before)
    r = w.get("/reset?token=" + tok)
    page = expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    assert hidden(page, "token") == tok
    r = w.post_form("/reset", {"token": tok, "password": "rita-password-4",
                               "confirm": "rita-password-5"})
    assert "do not match" in expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    r = w.post_form("/reset", {"token": tok, "password": "short", "confirm": "short"})
    assert "between 8 and 72 bytes" in expect_page(r, 200)
    r = w.post_form("/reset", {"token": tok, "password": "", "confirm": "x"})
    assert "fill in every field" in expect_page(r, 200)
    # D10 on the web path too: sessions made before this reset end.
    w.web_login("rita", "rita-password-2")
    old = c.post("/api/v1/auth/login", {"username": "rita",
                                        "password": "rita-password-2"}).json()["token"]
    r = w.post_form("/reset", {"token": tok, "password": "rita-password-4",
                               "confirm": "rita-password-4"})
    assert r.status == 303 and r.header("location") == "/reset/done", r
    assert r.header("cache-control") == "no-store"
    expect_json(c.get("/api/v1/user/devices", headers={"Cookie": "user_session=" + old}),
                401, "unauthorized", "session required")
    r = w.get("/dashboard")
    assert r.status == 302 and r.header("location") == "/login", r
    r = w.get("/reset/done")
    expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    # The token is spent: the form is gone, a replay goes back to /forgot.
    r = w.get("/reset?token=" + tok)
    assert r.status == 302 and r.header("location") == "/forgot", r
    assert r.header("cache-control") == "no-store"
    r = w.post_form("/reset", {"token": tok, "password": "rita-password-6",
                               "confirm": "rita-password-6"})
    assert r.status == 302 and r.header("location") == "/forgot", r
    r = w.post_form("/login", {"username": "rita", "password": "rita-password-2"})
    expect_page(r, 401)
    w.web_login("rita", "rita-password-4")


def test_expired_tokens_refused():
    s = stack()
    c = Client(s)
    before = len(dev_tokens(s))
    expect_json(json_register(c, "eve", "eve@example.org", "eve-password-1"), 200)
    ctok = wait_token(s, "confirm", "eve@example.org", before)
    before = len(dev_tokens(s))
    expect_json(c.post("/api/v1/auth/forgot", {"email": "eve@example.org"}), 200)
    rtok = wait_token(s, "reset", "eve@example.org", before)
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    with db(s) as con:
        con.execute("UPDATE server_email_tokens SET expires_at = ? "
                    "WHERE token_hash IN (?, ?)", (past, sha(ctok), sha(rtok)))
    expect_json(c.post("/api/v1/auth/confirm", {"token": ctok}), 400,
                "invalid_request", "token expired")
    expect_json(c.post("/api/v1/auth/reset", {"token": rtok,
                                              "new_password": "eve-password-2"}),
                400, "invalid_request", "token expired")
    r = c.get("/reset?token=" + rtok)
    assert r.status == 302 and r.header("location") == "/forgot", r
    r = c.post_form("/reset", {"token": rtok, "password": "eve-password-2",
                               "confirm": "eve-password-2"})
    assert r.status == 302 and r.header("location") == "/forgot", r
    r = c.post_form("/api/v1/auth/confirm", {"token": ctok})
    expect_page(r, 400)
    with db(s) as con:
        row = con.execute("SELECT confirmed FROM server_users WHERE username='eve'"
                          ).fetchone()
    assert row == (0,)
    expect_json(c.post("/api/v1/auth/login", {"username": "eve",
                                              "password": "eve-password-1"}), 403)


# ---------------------------------------------------------------------------
# Web pages (API.md 5)


def test_web_register_confirm_login_logout():
    s = stack()
    c = Client(s, lang="en-GB,en;q=0.9")
    r = c.get("/register")
    page = expect_page(r, 200)
    anon = c.cookies["verstak_locale_csrf"]
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert hidden(page, "locale_csrf") == anon
    sc = [x for x in c.last_set_cookies if x.startswith("verstak_locale_csrf=")]
    assert sc == [f"verstak_locale_csrf={anon}; Path=/; Max-Age=86400; HttpOnly; "
                  "SameSite=Strict"], sc
    # A second render keeps the cookie (set only when missing).
    c.get("/register")
    assert not c.last_set_cookies
    for f, flash in (({"username": "wes", "email": "", "password": "x"},
                      "fill in every field"),
                     ({"username": "w\tes", "email": "w@example.org",
                       "password": "wes-password-1"}, "control characters"),
                     ({"username": "wes", "email": "not-an-address",
                       "password": "wes-password-1"}, "valid e-mail"),
                     ({"username": "wes", "email": "wes@example.org",
                       "password": "short"}, "between 8 and 72 bytes"),
                     ({"username": "alice", "email": "wes@example.org",
                       "password": "wes-password-1"}, "already taken")):
        page = expect_page(c.post_form("/register", f), 200)
        assert flash in page, (f, page)
    before = len(dev_tokens(s))
    r = c.post_form("/register", {"username": " wes ", "email": "Wes@Example.org",
                                  "password": "wes-password-1"})
    assert r.status == 303 and r.header("location") == "/register/result", r
    expect_page(c.get("/register/result"), 200)
    tok = wait_token(s, "confirm", "wes@example.org", before)

    # The link's page, then its form.
    page = expect_page(c.get("/api/v1/auth/confirm?token=" + tok), 200)
    r = c.post_form("/api/v1/auth/confirm", {"token": hidden(page, "token")})
    assert r.status == 303 and r.header("location") == "/confirm/result", r
    r = c.get("/confirm/result")
    expect_page(r, 200)
    assert r.header("cache-control") == "no-store"

    r = c.get("/login")
    expect_page(r, 200)
    r = c.post_form("/login", {"username": " wes ", "password": "wes-password-1"})
    assert r.status == 303 and r.header("location") == "/dashboard", r
    tok_cookie = [x for x in c.last_set_cookies if x.startswith("user_session=")]
    csrf_cookie = [x for x in c.last_set_cookies if x.startswith("csrf_token=")]
    st, ct = c.cookies["user_session"], c.cookies["csrf_token"]
    assert re.fullmatch(r"[0-9a-f]{64}", st) and re.fullmatch(r"[0-9a-f]{64}", ct)
    assert tok_cookie == [f"user_session={st}; Path=/; Max-Age=86400; HttpOnly; "
                          "SameSite=Lax"], tok_cookie
    assert csrf_cookie == [f"csrf_token={ct}; Path=/; Max-Age=86400; "
                           "SameSite=Strict"], csrf_cookie
    with db(s) as con:
        row = con.execute("SELECT csrf_hash, scope FROM server_sessions WHERE "
                          "token_hash = ?", (sha(st),)).fetchone()
        assert row == (sha(ct), "user"), row
        # Web login does not touch last_seen.
        assert con.execute("SELECT last_seen FROM server_users WHERE "
                           "username = 'wes'").fetchone()[0] in (None, "")
    r = c.get("/login")
    assert r.status == 302 and r.header("location") == "/dashboard", r
    r = c.get("/dashboard")
    page = expect_page(r, 200)
    assert r.header("cache-control") == "no-store"
    assert "wes@example.org" in page and hidden(page, "csrf_token") == ct

    # Logout needs the session's CSRF token.
    r = c.post("/logout", form={})
    expect_json(r, 403, "csrf_invalid", "CSRF token is invalid")
    r = c.post("/logout", form={"csrf_token": "0" * 64})
    expect_json(r, 403, "csrf_invalid")
    r = c.post("/logout", form={"csrf_token": ct},
               headers={"Origin": "http://evil.example"})
    expect_json(r, 403, "csrf_invalid", "request origin is not allowed")
    r = c.post("/logout", form={"csrf_token": ct}, headers={"Origin": s.public})
    assert r.status == 302 and r.header("location") == "/login", r
    assert sorted(c.last_set_cookies) == sorted([
        "user_session=; Path=/; Max-Age=0; HttpOnly", "csrf_token=; Path=/; Max-Age=0"])
    # The session is gone from the database, not just from the browser.
    r = c.get("/dashboard", headers={"Cookie": "user_session=" + st})
    assert r.status == 302 and r.header("location") == "/login"
    with db(s) as con:
        assert con.execute("SELECT count(*) FROM server_sessions WHERE "
                           "token_hash = ?", (sha(st),)).fetchone()[0] == 0
    r = c.post("/logout", form={"csrf_token": ct})
    assert r.status == 302 and r.header("location") == "/login"


def test_dashboard_devices_search_and_revoke():
    s = stack()
    users, devices = MANIFEST["users"], MANIFEST["devices"]
    c = Client(s)
    c.web_login("alice", users["alice"]["password"])
    page = expect_page(c.get("/dashboard"), 200)
    mine = [d for d in devices.values() if d["user"] == "alice"]
    for d in mine:
        assert f'/api/v1/user/devices/{d["device_id"]}/revoke' in page or d.get("revoked"), d
    assert "bob-laptop" not in page and devices["bob-laptop"]["device_id"] not in page
    # JSON list: newest first, all strings.
    r = c.get("/api/v1/user/devices")
    lst = expect_json(r, 200)
    assert {d["id"] for d in lst} == {d["device_id"] for d in mine}, lst
    assert [d["created_at"] for d in lst] == sorted((d["created_at"] for d in lst),
                                                    reverse=True)
    for d in lst:
        assert set(d) == {"id", "name", "client_version", "last_seen",
                          "revoked_at", "created_at"}
        assert all(isinstance(v, str) for v in d.values())
    # ?q= filters by name, vault or version.
    names = {d["id"]: d["name"] for d in lst}
    laptop = devices["alice-laptop"]["device_id"]
    page = expect_page(c.get("/dashboard?q=" + urllib.parse.quote(names[laptop].upper())), 200)
    assert laptop in page
    page = expect_page(c.get("/dashboard?q=vault-b"), 200)
    assert devices["alice-work"]["device_id"] in page and laptop not in page
    page = expect_page(c.get("/dashboard?q=zzz-nothing"), 200)
    assert "No device matches" in page
    # Flash values: only the contract's keys show anything.
    assert "has been revoked" in expect_page(
        c.get("/dashboard?flash=user.deviceRevoked"), 200)
    assert "Wrong user name" in expect_page(
        c.get("/dashboard?error=error.invalidCredentials"), 200)
    page = expect_page(c.get("/dashboard?flash=error.accountTaken&error=nav.home"), 200)
    assert "already taken" not in page and "flash-" not in page

    ct = c.cookies["csrf_token"]
    path = f"/api/v1/user/devices/{laptop}/revoke"
    r = c.post(path, form={"csrf_token": ct, "password": "wrong-password"})
    assert r.status == 303 and r.header("location") == \
        "/dashboard?error=error.invalidCredentials", r
    r = c.post(path, form={"csrf_token": ct, "password": ""})
    assert r.status == 303 and "error.invalidCredentials" in r.header("location")
    r = c.post(path, form={"password": users["alice"]["password"]})
    expect_json(r, 403, "csrf_invalid")
    r = c.post(path, form={"csrf_token": ct, "password": users["alice"]["password"]})
    assert r.status == 303 and r.header("location") == \
        "/dashboard?flash=user.deviceRevoked", r
    with db(s) as con:
        rev = con.execute("SELECT revoked_at FROM server_devices WHERE id = ?",
                          (laptop,)).fetchone()[0]
        audit = con.execute("SELECT user_id, device_id, message FROM server_audit_log "
                            "WHERE event_type = 'device_revoked' AND device_id = ?",
                            (laptop,)).fetchall()
    assert rev, "revoked_at set"
    assert audit == [(users["alice"]["id"], laptop, "device revoked from web dashboard")]
    # The device's token no longer works.
    r = s.get("/api/client/me", headers={"Authorization": "Bearer " +
                                         devices["alice-laptop"]["token"]})
    assert r.status == 401, r
    # JSON mode with the CSRF header.
    work = devices["alice-work"]["device_id"]
    hdr = {"X-CSRF-Token": ct}
    base = "/api/v1/user/devices/"
    expect_json(c.post(base + work + "/revoke", {}, headers=hdr), 400,
                "invalid_request", "password required")
    expect_json(c.post(base + work + "/revoke", {"password": "nope-nope"}, headers=hdr),
                403, "forbidden", "wrong password")
    expect_json(c.post(base + devices["bob-laptop"]["device_id"] + "/revoke",
                       {"password": users["alice"]["password"]}, headers=hdr),
                403, "forbidden", "device does not belong to you")
    expect_json(c.post(base + "dev_nope/revoke", {"password": users["alice"]["password"]},
                       headers=hdr), 404, "not_found", "device not found")
    expect_json(c.post(base + work + "/disable", {"password": "x"}, headers=hdr),
                404, "not_found", "not found")
    expect_json(c.post(base + work + "/revoke", {"password": users["alice"]["password"]},
                       headers=hdr), 200)
    r = c.get(base + work + "/revoke")
    expect_json(r, 405, "method_not_allowed")
    assert r.header("allow") == "POST"
    # Without a session: forms go to /login, JSON gets 401 (D7).
    anon = Client(s)
    r = anon.post(base + work + "/revoke", form={"password": "x"})
    assert r.status == 302 and r.header("location") == "/login", r
    expect_json(anon.post(base + work + "/revoke", {"password": "x"}), 401,
                "unauthorized", "session required")
    expect_json(anon.get("/api/v1/user/devices"), 401, "unauthorized",
                "session required")
    r = anon.get("/dashboard")
    assert r.status == 302 and r.header("location") == "/login", r


def test_stored_values_escaped_on_every_page():
    s = stack()
    c = Client(s)
    email = "xss@example.org"
    register_and_confirm(s, c, HOSTILE, email, "xss-password-1")
    # A device with hostile name, vault and version, paired as the desktop does.
    r = s.post("/api/client/pair", {"login": email, "password": "xss-password-1",
                                    "device_name": HOSTILE, "client_version": HOSTILE,
                                    "vault_id": HOSTILE},
               headers={"X-Forwarded-For": c.ip})
    assert r.status == 200, r
    c.web_login(email, "xss-password-1")
    pages = {
        "dashboard": c.get("/dashboard"),
        "dashboard?q": c.get("/dashboard?q=" + urllib.parse.quote(HOSTILE)),
        "login re-render": Client(s).post_form("/login", {"username": HOSTILE,
                                                          "password": "wrong-pass"}),
        "register re-render": Client(s).post_form(
            "/register", {"username": HOSTILE, "email": HOSTILE, "password": "x"}),
        "404": c.get("/" + urllib.parse.quote(HOSTILE)),
        "404 query": c.get("/nothing?x=" + urllib.parse.quote(HOSTILE)),
        "confirm page": c.get("/api/v1/auth/confirm?token=" +
                              urllib.parse.quote(HOSTILE)),
    }
    for name, r in pages.items():
        assert r.status in (200, 401, 404), (name, r)
        body = text(r)
        assert "<script>alert" not in body and HOSTILE not in body, name
        assert "<script>" not in body and "style=" not in body, name
        assert r.header("content-security-policy").startswith("default-src 'self'")
    dash = text(pages["dashboard"])
    assert dash.count(HOSTILE_ESC) >= 4, dash   # user name, device name, vault, version
    assert HOSTILE_ESC in text(pages["login re-render"])
    assert HOSTILE_ESC in text(pages["register re-render"])
    assert HOSTILE_ESC in text(pages["confirm page"])
    # Pages that show a user name are not cached.
    assert pages["dashboard"].header("cache-control") == "no-store"
    assert pages["login re-render"].header("cache-control") == "no-store"
    # JSON keeps its own escaping.
    lst = c.get("/api/v1/user/devices")
    assert b"<script>" not in lst.body and lst.json()[0]["name"] == HOSTILE


def test_forms_without_csrf_are_refused():
    s = stack()
    c = Client(s)
    anon = c.anon_csrf()
    forms = {
        "/register": {"username": "csrf1", "email": "csrf1@example.org",
                      "password": "csrf-password-1"},
        "/login": {"username": "alice", "password": MANIFEST["users"]["alice"]["password"]},
        "/forgot": {"email": "alice@example.org"},
        "/reset": {"token": "a" * 48, "password": "p-password-1",
                   "confirm": "p-password-1"},
        "/locale": {"locale": "ru", "from": "/"},
        "/api/v1/auth/confirm": {"token": "a" * 48},
    }
    for path, f in forms.items():
        # No field; a wrong field; the right field from a foreign origin;
        # the right field but no cookie.
        for extra, hdrs, jar in (({}, {}, True),
                                 ({"locale_csrf": "0" * 64}, {}, True),
                                 ({"locale_csrf": anon},
                                  {"Origin": "http://evil.example"}, True),
                                 ({"locale_csrf": anon}, {}, False)):
            cl = c if jar else Client(s)
            r = cl.post(path, form=dict(f, **extra), headers=hdrs)
            page = expect_page(r, 403)
            assert "reload the page" in page, (path, extra)
            assert "user_session" not in cl.cookies
    with db(s) as con:
        assert con.execute("SELECT count(*) FROM server_users WHERE username = "
                           "'csrf1'").fetchone()[0] == 0
    # Same origin and null Origin.
    r = c.post("/locale", form={"locale": "ru", "from": "/", "locale_csrf": anon},
               headers={"Origin": "null"})
    expect_page(r, 403)
    r = c.post("/locale", form={"locale": "ru", "from": "/login", "locale_csrf": anon},
               headers={"Origin": s.public})
    assert r.status == 303 and r.header("location") == "/login", r


def test_sessions_survive_restart_and_die_at_logout():
    s = make_stack().start()
    try:
        c = Client(s)
        c.web_login("bob", MANIFEST["users"]["bob"]["password"])
        j = c.post("/api/v1/auth/login", {"username": "bob",
                                          "password": MANIFEST["users"]["bob"]["password"]}
                   ).json()
        assert s.worker_pids()
        s.stop()
        s.start()
        # Both sessions are rows in server.db: any new worker accepts them.
        for _ in range(4):
            assert c.get("/dashboard").status == 200
        expect_json(c.get("/api/v1/user/devices",
                          headers={"Cookie": "user_session=" + j["token"]}), 200)
        r = c.logout()
        assert r.status == 302 and r.header("location") == "/login", r
        assert c.get("/dashboard").status == 302
        # The other session (JSON login) lives on: logout ends one session.
        expect_json(c.get("/api/v1/user/devices",
                          headers={"Cookie": "user_session=" + j["token"]}), 200)
    finally:
        s.cleanup()


def test_registration_disabled():
    s = make_stack(allow_registration=False)
    # D4: saving config.yml (here: adding an administrator) writes the
    # "off" explicitly, so the restart below still has registration off.
    r = run_cli(["--data", s.data, "--admin-user", "regoff", "--admin-pass",
                 "regoff-password", "--init-admin"])
    assert r.returncode == 0, r.stderr
    with open(os.path.join(s.data, "config.yml")) as f:
        cfg = f.read()
    assert "username: regoff" in cfg and "allow_registration: false" in cfg, cfg
    s.start()
    try:
        c = Client(s)
        with db(s) as con:
            n = con.execute("SELECT count(*) FROM server_users").fetchone()[0]
        expect_json(json_register(c, "nope", "nope@example.org"), 403,
                    "registration_disabled", "registration is disabled")
        for method in ("GET", "POST", "PUT"):
            r = c.request(method, "/register", form={"locale_csrf": c.anon_csrf()}
                          if method == "POST" else None)
            expect_page(r, 404)
        with db(s) as con:
            assert con.execute("SELECT count(*) FROM server_users").fetchone()[0] == n
        assert 'href="/register"' not in expect_page(c.get("/"), 200)
        assert 'href="/register"' not in expect_page(c.get("/login"), 200)
    finally:
        s.cleanup()


def test_locale_choice():
    s = stack()
    c = Client(s, lang="ru-RU,ru;q=0.9,en;q=0.8")
    page = expect_page(c.get("/login"), 200)
    assert '<html lang="ru">' in page and "Вход" in page
    page = expect_page(Client(s, lang="de, en;q=0.5").get("/login"), 200)
    assert '<html lang="en">' in page and "Sign in" in page
    page = expect_page(Client(s).get("/"), 200)
    assert '<html lang="en">' in page
    anon = c.anon_csrf()
    r = c.post("/locale", form={"locale": "en", "from": "/login?x=1",
                                "locale_csrf": anon})
    assert r.status == 303 and r.header("location") == "/login?x=1", r
    assert c.last_set_cookies == ["verstak_locale=en; Path=/; Max-Age=31536000; "
                                  "HttpOnly; SameSite=Lax"]
    page = expect_page(c.get("/login"), 200)
    assert '<html lang="en">' in page          # cookie beats the header
    assert '<option value="en" selected>' in page
    for value, want in (("system", "ru"), ("klingon", "ru"), ("ru", "ru")):
        r = c.post("/locale", form={"locale": value, "from": "//evil.example/x",
                                    "locale_csrf": anon})
        assert r.status == 303 and r.header("location") == "/", r
        assert c.cookies["verstak_locale"] == (value if value in ("ru",) else "system")
        assert f'<html lang="{want}">' in expect_page(c.get("/forgot"), 200)
    for bad in ("http://evil.example/", "/\\evil.example", "evil"):
        r = c.post("/locale", form={"locale": "ru", "from": bad, "locale_csrf": anon})
        assert r.header("location") == "/", (bad, r.header("location"))
    r = c.post("/locale", body="a=%zz", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    expect_page(r, 200)
    r = c.get("/locale")
    expect_json(r, 405)
    assert r.header("allow") == "POST"
    # Error pages and flashes come in the request's language too.
    r = c.post_form("/login", {"username": "alice", "password": "wrong-password"})
    assert "Неверное имя пользователя" in expect_page(r, 401)


def test_https_cookies_are_secure():
    s = stack()
    c = Client(s, https=True)
    c.get("/login")
    assert any(x.startswith("verstak_locale_csrf=") and "; Secure" in x
               for x in c.last_set_cookies), c.last_set_cookies
    c.web_login("alice", MANIFEST["users"]["alice"]["password"])
    for x in c.last_set_cookies:
        assert "; Secure" in x, x
    r = c.logout()
    assert r.status == 302
    assert all("; Secure" in x for x in c.last_set_cookies), c.last_set_cookies


def test_rate_limits():
    s = stack()
    c = Client(s)
    # forgot: 5 per hour per IP; the 6th web form gets the 429 page.
    for i in range(5):
        r = c.post_form("/forgot", {"email": f"nobody{i}@example.org"})
        assert r.status == 303, r
    r = c.post_form("/forgot", {"email": "nobody9@example.org"})
    page = expect_page(r, 429)
    assert int(r.header("retry-after")) >= 1
    assert "Too many attempts" in page
    # The JSON route shares the bucket across workers: 429 JSON.
    r = c.post("/api/v1/auth/forgot", {"email": "x@example.org"})
    expect_json(r, 429, "rate_limited", "too many attempts")
    assert int(r.header("retry-after")) >= 1
    # login: 10 per 10 minutes per IP.
    j = Client(s)
    for i in range(10):
        assert j.post("/api/v1/auth/login", {"username": f"u{i}",
                                             "password": "p-password"}).status == 401
    expect_json(j.post("/api/v1/auth/login", {"username": "u", "password": "p"}), 429)
    expect_page(j.post_form("/login", {"username": "u", "password": "p"}), 429)
    # register: 5 per hour (per IP; the account bucket is the e-mail).
    g = Client(s)
    for i in range(5):
        r = json_register(g, f"rl{i}", f"rl{i}@example.org", "x")
        expect_json(r, 400, "invalid_request", "PASSWORD_TOO_SHORT")
    expect_json(json_register(g, "rl9", "rl9@example.org"), 429)
    r = g.post_form("/register", {"username": "rl8", "email": "rl8@example.org",
                                  "password": "rl8-password"})
    expect_page(r, 429)
    # reset: 8 per hour, by IP only; JSON 429, then the web form's page.
    t = Client(s)
    for i in range(8):
        expect_json(t.post("/api/v1/auth/reset", {"token": f"{i:048x}",
                                                  "new_password": "rl-password-1"}),
                    400, "invalid_request", "invalid or expired token")
    r = t.post("/api/v1/auth/reset", {"token": "f" * 48, "new_password": "rl-password-1"})
    expect_json(r, 429, "rate_limited", "too many attempts")
    assert int(r.header("retry-after")) >= 1
    r = t.post_form("/reset", {"token": "f" * 48, "password": "rl-password-1",
                               "confirm": "rl-password-1"})
    expect_page(r, 429)
    assert int(r.header("retry-after")) >= 1
    assert r.header("cache-control") == "no-store"
    # Another address is not limited by that bucket.
    expect_json(Client(s).post("/api/v1/auth/reset", {"token": "f" * 48,
                                                      "new_password": "rl-password-1"}),
                400, "invalid_request", "invalid or expired token")


def test_methods_headers_and_static():
    s = stack()
    c = Client(s)
    for path, allow in (("/", "GET"), ("/dashboard", "GET"), ("/logout", "POST"),
                        ("/login", "GET, POST"), ("/forgot", "GET, POST"),
                        ("/register/result", "GET"), ("/forgot/sent", "GET"),
                        ("/api/v1/auth/confirm", "GET, POST"),
                        ("/api/v1/user/devices", "GET")):
        method = "PUT" if allow != "POST" else "GET"
        r = c.request(method, path)
        expect_json(r, 405, "method_not_allowed")
        assert r.header("allow") == allow, (path, r.header("allow"))
    for path in ("/reset", "/reset/done", "/confirm/result"):
        r = c.request("DELETE", path)
        assert r.status == 405 and r.header("cache-control") == "no-store", (path, r)
    r = c.request("HEAD", "/")
    assert r.status == 405
    r = c.get("/")
    expect_page(r, 200)
    assert r.header("cache-control") is None
    r = c.get("/reset")
    assert r.status == 302 and r.header("location") == "/forgot"
    assert r.header("cache-control") == "no-store"
    expect_page(c.get("/no/such/page"), 404)
    expect_json(c.get("/api/no/such"), 404, "not_found")
    for path, ctype in (("/static/app.css", "text/css"),
                        ("/static/app.js", "text/javascript"),
                        ("/static/logo.svg", "image/svg+xml")):
        r = c.get(path)
        assert r.status == 200 and r.header("content-type").startswith(ctype), (path, r)
    # A form body that does not parse: the 400 page.
    r = c.post("/login", body="a=%zz", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    expect_page(r, 400)
    r = c.post("/api/v1/auth/confirm", body="a=%zz", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    expect_json(r, 400, "invalid_request", "invalid form")


def test_zz_stop_shared_stack():
    """Stops the shared stack (runs last: tests run in file order)."""
    global STACK
    if STACK is not None:
        s, STACK = STACK, None
        assert s.stop() == 0
        assert not s.leftovers()
        s.cleanup()


if __name__ == "__main__":
    try:
        run_tests(dict(globals()))
    finally:
        if STACK is not None:
            STACK.cleanup()
