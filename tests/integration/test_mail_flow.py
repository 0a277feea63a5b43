"""Accounts end to end through a real SMTP server: register (JSON and
web form), receive the confirmation mail, follow its link, log in; forgot
-> mail -> reset -> log in with the new password, the old one fails; the
Russian mails. The SMTP server is aiosmtpd on a loopback port owned by
this test; mail leaves the worker through the background sender.

Also the mail defects through the real request paths (DEFECTS.md): the
texts and headers of every account mail (D1, D23), mail from the JSON
routes (D2), links never built from the request's Host (D20), a silent
SMTP server does not hold the request (D21), and "starttls" never falls
back to plaintext (D22)."""
import email
import email.policy
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Stack, describe_processes, free_port,  # noqa: E402
                     processes_mentioning, run_cli, run_tests)
from test_accounts import Client, hidden  # noqa: E402
from test_mail import Server  # noqa: E402

LINK_RE = re.compile(r"(https?://\S+)")
FROM = "noreply@example.com"

# API.md 13.3: (subject, lead line) by mail kind and language.
TEXTS = {
    ("confirm", "en"): ("Verstak — email confirmation", "Confirm registration:"),
    ("confirm", "ru"): ("Verstak — подтверждение email", "Подтвердите регистрацию:"),
    ("reset", "en"): ("Verstak — password reset", "Reset your password:"),
    ("reset", "ru"): ("Verstak — сброс пароля", "Сбросить пароль:"),
}
LINK_PATH = {"confirm": "/api/v1/auth/confirm?token=", "reset": "/reset?token="}


def wait_mail(server, count, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(server.sink.messages) >= count:
            return server.sink.messages[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"mail {count} never arrived")


def read_mail(envelope):
    msg = email.message_from_bytes(envelope.original_content,
                                   policy=email.policy.default)
    body = msg.get_content()
    links = LINK_RE.findall(body)
    assert len(links) == 1, body
    return str(msg["subject"]), links[0], msg, envelope.rcpt_tos


def check_mail(envelope, kind, lang, to, base):
    """Asserts one account mail is exactly what API.md 13.3 says (D1,
    D23) and returns (link, token)."""
    raw = envelope.original_content
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(b < 0x80 for b in head), f"8-bit header bytes (D23): {head!r}"
    subject, link, msg, rcpt = read_mail(envelope)
    want_subject, lead = TEXTS[(kind, lang)]
    assert subject == want_subject, (subject, want_subject)
    if not want_subject.isascii():
        assert b"=?UTF-8?B?" in head.upper(), head
    assert msg["From"] == FROM and msg["To"] == to, (msg["From"], msg["To"])
    assert envelope.mail_from == FROM and rcpt == [to], rcpt
    assert msg["Date"] and msg["Message-ID"], "Date and Message-ID (D23)"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"], "Content-Transfer-Encoding (D23)"
    body = msg.get_content()
    # D1: real text, the link on its own line and exactly once.
    for junk in ("%!", "Translation unavailable", "Перевод временно недоступен",
                 "EXTRA"):
        assert junk not in body, body
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    assert lines == [lead, link], lines
    assert body.count(link) == 1 and body.count("token=") == 1, body
    assert link.startswith(base + LINK_PATH[kind]), (link, base)
    token = link[len(base + LINK_PATH[kind]):]
    assert re.fullmatch(r"[0-9a-f]{48}", token), link
    return link, token


def smtp_set(data, *args):
    r = run_cli(["smtp", "set", "--data", data] + list(args))
    assert r.returncode == 0, r.stderr


def start(smtp_port, security="none", public=True, env=None):
    """A stack whose SMTP settings point at smtp_port; public_url is the
    stack's own address unless public is False (then neither public_url
    nor server_url is set)."""
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    e = {"VERSTAK_TRUSTED_PROXIES": "127.0.0.1"}
    if public:
        e["VERSTAK_PUBLIC_URL"] = public_url
    e.update(env or {})
    s = Stack(port=port, env=e)
    os.makedirs(s.data)
    smtp_set(s.data, "--host", "127.0.0.1", "--port", str(smtp_port),
             "--security", security, "--from", FROM)
    s.start()
    s.public = public_url
    return s


def log_text(s):
    with open(os.path.join(s.tmp, "stack.log"), errors="replace") as f:
        return f.read()


def wait_log(s, *parts, timeout=15):
    """The first log line containing every one of parts."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in log_text(s).splitlines():
            if all(p in line for p in parts):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no log line with {parts}:\n{log_text(s)[-3000:]}")


def follow_confirm(c, public, link):
    assert link.startswith(public + "/api/v1/auth/confirm?token="), link
    path = link[len(public):]
    r = c.get(path)  # shows a form; nothing is confirmed by GET
    assert r.status == 200, r
    page = r.body.decode()
    r = c.post_form("/api/v1/auth/confirm", {"token": hidden(page, "token")})
    assert r.status == 303 and r.header("location") == "/confirm/result", r


def json_login(c, user, pw):
    return c.post("/api/v1/auth/login", {"username": user, "password": pw})


def test_register_confirm_forgot_reset_by_mail():
    with Server() as smtp:
        s = start(smtp.port)
        try:
            base = s.public
            # JSON registration (D2): the mail's token confirms through
            # the JSON confirm route.
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "mia",
                                                 "email": "Mia@Example.org",
                                                 "password": "first-password"})
            assert r.status == 200 and r.json() == {"status": "confirmation_sent"}, r
            _, token = check_mail(wait_mail(smtp, 1), "confirm", "en",
                                  "mia@example.org", base)
            assert json_login(c, "mia", "first-password").status == 403  # not yet
            r = c.post("/api/v1/auth/confirm", {"token": token})
            assert r.status == 200 and r.json() == {"status": "confirmed"}, r
            r = json_login(c, "mia", "first-password")
            assert r.status == 200 and len(r.json()["token"]) == 64, r

            # Web form registration: the link's page, its form, log in.
            w = Client(s)
            r = w.post_form("/register", {"username": "noor", "email": "noor@example.org",
                                          "password": "web-password-1"})
            assert r.status == 303 and r.header("location") == "/register/result", r
            link, _ = check_mail(wait_mail(smtp, 2), "confirm", "en",
                                 "noor@example.org", base)
            follow_confirm(w, base, link)
            w.web_login("noor", "web-password-1")
            assert w.get("/dashboard").status == 200

            # JSON forgot (D2) -> mail -> the token on the JSON reset
            # route -> the new password works, the old one fails.
            r_known = c.post("/api/v1/auth/forgot", {"email": "mia@example.org"})
            assert r_known.status == 200
            _, token = check_mail(wait_mail(smtp, 3), "reset", "en",
                                  "mia@example.org", base)
            r = c.post("/api/v1/auth/reset", {"token": token,
                                              "new_password": "second-password"})
            assert r.status == 200 and r.json() == {"status": "password reset"}, r
            assert json_login(c, "mia", "second-password").status == 200
            assert json_login(c, "mia", "first-password").status == 401
            r = c.post("/api/v1/auth/reset", {"token": token,
                                              "new_password": "third-password"})
            assert r.status == 400, r                       # used

            # Unknown address: the identical answer, no mail.
            r_unknown = c.post("/api/v1/auth/forgot", {"email": "nobody@example.org"})
            assert (r_unknown.status, r_unknown.body) == (r_known.status, r_known.body)

            # Web forgot in Russian -> mail -> the reset page -> log in.
            ru = Client(s, lang="ru-RU,ru;q=0.9")
            r = ru.post_form("/forgot", {"email": "noor@example.org"})
            assert r.status == 303 and r.header("location") == "/forgot/sent", r
            link, _ = check_mail(wait_mail(smtp, 4), "reset", "ru",
                                 "noor@example.org", base)   # nobody@ got none
            r = ru.get(link[len(base):])
            assert r.status == 200 and r.header("cache-control") == "no-store"
            tok = hidden(r.body.decode(), "token")
            r = ru.post_form("/reset", {"token": tok, "password": "web-password-2",
                                        "confirm": "web-password-2"})
            assert r.status == 303 and r.header("location") == "/reset/done", r
            ru.web_login("noor", "web-password-2")
            assert json_login(ru, "noor", "web-password-1").status == 401
            r = ru.get(link[len(base):])                    # the used link is dead
            assert r.status == 302 and r.header("location") == "/forgot"

            # Russian confirmation mail (D23: encoded subject, 7-bit head).
            r = ru.post("/api/v1/auth/register", {"username": "olga",
                                                  "email": "olga@example.org",
                                                  "password": "olga-password"})
            assert r.status == 200, r
            check_mail(wait_mail(smtp, 5), "confirm", "ru", "olga@example.org", base)
            time.sleep(0.5)
            assert len(smtp.sink.messages) == 5
        finally:
            s.cleanup()


def test_links_never_use_the_request_host():
    """D20: without server_url and public_url no mail is sent, whatever
    Host the request names; with public_url the link starts with it;
    server_url wins over public_url."""
    evil = {"Host": "evil.example"}
    with Server() as smtp:
        s = start(smtp.port, public=False)
        try:
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "hal",
                                                 "email": "hal@example.org",
                                                 "password": "hal-password-1"},
                       headers=evil)
            assert r.status == 200, r
            r = c.post("/forgot", form={"email": "hal@example.org",
                                        "locale_csrf": c.anon_csrf()}, headers=evil)
            assert r.status == 303 and r.header("location") == "/forgot/sent", r
            wait_log(s, "mail (confirm) to hal@example.org not sent", "no link base")
            wait_log(s, "mail (reset) to hal@example.org not sent", "no link base")
            time.sleep(1)
            assert smtp.sink.messages == []
            assert "evil.example" not in log_text(s)

            s.stop()
            s.env["VERSTAK_PUBLIC_URL"] = "https://sync.example.test/"
            s.start()
            r = c.post("/forgot", form={"email": "hal@example.org",
                                        "locale_csrf": c.anon_csrf()}, headers=evil)
            assert r.status == 303, r
            env = wait_mail(smtp, 1)
            check_mail(env, "reset", "en", "hal@example.org", "https://sync.example.test")
            assert b"evil.example" not in env.original_content

            s.stop()
            smtp_set(s.data, "--server-url", "https://links.example.test")
            s.start()
            r = c.post("/api/v1/auth/forgot", {"email": "hal@example.org"}, headers=evil)
            assert r.status == 200, r
            env = wait_mail(smtp, 2)
            check_mail(env, "reset", "en", "hal@example.org", "https://links.example.test")
            assert b"evil.example" not in env.original_content
        finally:
            s.cleanup()


def test_silent_smtp_server_does_not_hold_requests():
    """D21: an SMTP server that accepts and never answers: register and
    forgot answer at once, the workers stay free, and the background
    sender logs the timeout (deadline shortened to 8 s; 30 s in
    production, see tests/unit/test_mail.c).

    Proved by order, not by a stopwatch, so a loaded machine cannot fail
    it: each answer (and every page load after the forgot) must arrive
    before the sender has given up on that mail. A request that waited
    for SMTP could only answer after the timeout had been logged."""
    def timed_out(kind):
        return any(f"mail ({kind}) to ivy@example.org not sent" in line
                   and "timed out" in line for line in log_text(s).splitlines())

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        s = start(lsock.getsockname()[1],
                  env={"VERSTAK_SMTP_TIMEOUT_SECONDS": "8"})
        try:
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "ivy",
                                                 "email": "ivy@example.org",
                                                 "password": "ivy-password-1"})
            assert r.status == 200, r
            assert not timed_out("confirm"), "register waited for SMTP"
            r = c.post_form("/forgot", {"email": "ivy@example.org"})
            assert r.status == 303 and r.header("location") == "/forgot/sent", r
            assert not timed_out("reset"), "web forgot waited for SMTP"
            # Both workers are free while the mails hang: six page loads
            # (three per worker) finish before the reset mail gives up.
            for _ in range(6):
                assert c.get("/login").status == 200
            assert not timed_out("reset"), "a worker was held by the sender"
            wait_log(s, "mail (reset) to ivy@example.org not sent", "timed out",
                     timeout=40)
            wait_log(s, "mail (confirm) to ivy@example.org not sent", "timed out",
                     timeout=40)
        finally:
            s.cleanup()


def comm(pid):
    """A process's name, or "" once it has gone (it may end between the
    listing and the read)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_stop_leaves_no_mail_sender_behind():
    """A mail still being sent when the stack stops (an SMTP server that
    never answers, the production 30 s deadline): the stop waits a short
    grace, then ends the sender; no process of the server is left."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        s = start(lsock.getsockname()[1])
        try:
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "kim",
                                                 "email": "kim@example.org",
                                                 "password": "kim-password-1"})
            assert r.status == 200, r
            deadline = time.time() + 10
            while time.time() < deadline and not any(
                    comm(pid) == "vs-mail-sender"
                    for pid in processes_mentioning(s.data)):
                time.sleep(0.1)
            t0 = time.monotonic()
            assert s.stop() == 0
            took = time.monotonic() - t0
            assert took < 15, f"stop took {took:.1f}s"
            left = s.leftovers()
            assert left == [], (describe_processes(left),
                                log_text(s)[-2000:])
            wait_log(s, "stopping", "leftover process")
        finally:
            s.cleanup()


def test_starttls_required_for_account_mail():
    """D22: security starttls and a server that does not offer it: no
    account mail reaches it in plaintext, the refusal is logged."""
    with Server() as smtp:
        s = start(smtp.port, security="starttls")
        try:
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "jon",
                                                 "email": "jon@example.org",
                                                 "password": "jon-password-1"})
            assert r.status == 200, r
            r = c.post_form("/forgot", {"email": "jon@example.org"})
            assert r.status == 303, r
            wait_log(s, "mail (confirm) to jon@example.org not sent",
                     "does not offer STARTTLS")
            wait_log(s, "mail (reset) to jon@example.org not sent",
                     "does not offer STARTTLS")
            time.sleep(0.5)
            assert smtp.sink.messages == []
        finally:
            s.cleanup()


if __name__ == "__main__":
    run_tests(dict(globals()))
