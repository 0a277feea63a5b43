"""Accounts end to end through a real SMTP server: register (JSON and
web form), receive the confirmation mail, follow its link, log in; forgot
-> mail -> reset -> log in with the new password, the old one fails; the
Russian reset mail. The SMTP server is aiosmtpd on a loopback port owned
by this test; mail leaves the worker through the background sender."""
import email
import email.policy
import os
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, free_port, run_cli, run_tests  # noqa: E402
from test_accounts import Client, hidden  # noqa: E402
from test_mail import Server  # noqa: E402

LINK_RE = re.compile(r"(https?://\S+)")


def wait_mail(server, count, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(server.sink.messages) >= count:
            return server.sink.messages[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"mail {count} never arrived")


def read_mail(envelope):
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    body = msg.get_content()
    links = LINK_RE.findall(body)
    assert len(links) == 1, body
    return str(msg["subject"]), links[0], msg, envelope.rcpt_tos


def start(server):
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    s = Stack(port=port, env={"VERSTAK_TRUSTED_PROXIES": "127.0.0.1",
                              "VERSTAK_PUBLIC_URL": public})
    os.makedirs(s.data)
    r = run_cli(["smtp", "set", "--data", s.data, "--host", "127.0.0.1",
                 "--port", str(server.port), "--security", "none",
                 "--from", "noreply@example.com"])
    assert r.returncode == 0, r.stderr
    s.start()
    s.public = public
    return s


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
        s = start(smtp)
        try:
            # JSON registration
            c = Client(s)
            r = c.post("/api/v1/auth/register", {"username": "mia",
                                                 "email": "Mia@Example.org",
                                                 "password": "first-password"})
            assert r.status == 200 and r.json() == {"status": "confirmation_sent"}, r
            subject, link, msg, rcpt = read_mail(wait_mail(smtp, 1))
            assert subject == "Verstak — email confirmation" and rcpt == ["mia@example.org"]
            assert msg["Date"] and msg["Message-ID"]
            assert json_login(c, "mia", "first-password").status == 403  # not yet
            follow_confirm(c, s.public, link)
            r = json_login(c, "mia", "first-password")
            assert r.status == 200 and len(r.json()["token"]) == 64, r

            # Web form registration
            w = Client(s)
            r = w.post_form("/register", {"username": "noor", "email": "noor@example.org",
                                          "password": "web-password-1"})
            assert r.status == 303 and r.header("location") == "/register/result", r
            subject, link, _, rcpt = read_mail(wait_mail(smtp, 2))
            assert rcpt == ["noor@example.org"]
            follow_confirm(w, s.public, link)
            w.web_login("noor", "web-password-1")
            assert w.get("/dashboard").status == 200

            # forgot -> mail -> reset -> new password works, old fails
            r = c.post("/api/v1/auth/forgot", {"email": "mia@example.org"})
            assert r.status == 200
            subject, link, _, _ = read_mail(wait_mail(smtp, 3))
            assert subject == "Verstak — password reset"
            assert link.startswith(s.public + "/reset?token=")
            r = c.get(link[len(s.public):])
            assert r.status == 200 and r.header("cache-control") == "no-store"
            token = hidden(r.body.decode(), "token")
            r = c.post_form("/reset", {"token": token, "password": "second-password",
                                       "confirm": "second-password"})
            assert r.status == 303 and r.header("location") == "/reset/done", r
            assert json_login(c, "mia", "second-password").status == 200
            assert json_login(c, "mia", "first-password").status == 401
            # the used link is dead
            r = c.get(link[len(s.public):])
            assert r.status == 302 and r.header("location") == "/forgot"

            # unknown address: same answer, no mail
            r = c.post("/api/v1/auth/forgot", {"email": "nobody@example.org"})
            assert r.status == 200
            # Russian reset mail through the web form
            ru = Client(s, lang="ru-RU,ru;q=0.9")
            r = ru.post_form("/forgot", {"email": "noor@example.org"})
            assert r.status == 303 and r.header("location") == "/forgot/sent", r
            subject, link, msg, rcpt = read_mail(wait_mail(smtp, 4))
            assert rcpt == ["noor@example.org"], "the unknown address got no mail"
            assert subject == "Verstak — сброс пароля"
            head = envelope_head(smtp.sink.messages[3].content)
            assert head.isascii() and "=?UTF-8?" in head.upper()
            time.sleep(0.5)
            assert len(smtp.sink.messages) == 4
        finally:
            s.cleanup()


def envelope_head(raw):
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")


if __name__ == "__main__":
    run_tests(dict(globals()))
