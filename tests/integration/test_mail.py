"""Integration tests for mail (API.md 13, D21, D22, D23) through the
`smtp set|show|test` commands of the real binary, against SMTP servers
the test owns on free loopback ports (aiosmtpd, Debian package
python3-aiosmtpd): plaintext, AUTH PLAIN to loopback, STARTTLS required
(D22), implicit TLS, certificate verification (an untrusted or
wrong-name certificate must fail; SSL_CERT_FILE makes the test's
self-signed certificate trusted, since OpenSSL's default verify paths
honour it), and a server that accepts and never answers (D21, with
VERSTAK_SMTP_TIMEOUT_SECONDS shortening the 30 s deadline).
"""
import os
import sys

DEBIAN_PYTHON = "/usr/bin/python3"
try:
    import aiosmtpd  # noqa: F401
except ImportError:
    # configure may have picked a python3 without Debian's packages.
    if os.path.exists(DEBIAN_PYTHON) and os.path.realpath(sys.executable) != \
            os.path.realpath(DEBIAN_PYTHON):
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON] + sys.argv)
    print("aiosmtpd is missing: apt-get install python3-aiosmtpd"
          " (scripts/deps.sh test)")
    print("RESULT tests=1 failures=1")
    sys.exit(1)

import email
import logging
import warnings
import email.header
import email.policy
import shutil
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port, remove_writer_queue, run_cli, run_tests  # noqa: E402

# aiosmtpd logs every refused handshake with a traceback; VS_MAIL_DEBUG=1
# shows the whole SMTP conversation instead.
if os.environ.get("VS_MAIL_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
else:
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not")

FROM = "noreply@example.com"
TEST_SUBJECT = "Test from Verstak Sync"
FAST = {"VERSTAK_SMTP_TIMEOUT_SECONDS": "3"}


class Sink:
    """aiosmtpd handler that keeps every message."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


class Auth:
    """Authenticator that accepts one user and records the mechanism."""

    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()
        self.seen = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.seen.append(mechanism)
        ok = (auth_data.login == self.user and auth_data.password == self.password)
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)


class Server:
    """One aiosmtpd server on a free loopback port."""

    def __init__(self, **kw):
        self.sink = Sink()
        self.port = free_port()
        self.ctl = Controller(self.sink, hostname="127.0.0.1", port=self.port, **kw)

    def __enter__(self):
        self.ctl.start()
        return self

    def __exit__(self, *exc):
        self.ctl.stop()


class Certs:
    """A self-signed certificate for DNS name "localhost" only."""

    def __init__(self, tmp):
        self.cert = os.path.join(tmp, "cert.pem")
        self.key = os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             "-keyout", self.key, "-out", self.cert],
            check=True, capture_output=True)
        self.sni = []

    def server_ctx(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.sni_callback = lambda sock, name, c: self.sni.append(name)
        return ctx

    def trust(self):
        return {"SSL_CERT_FILE": self.cert}


class DataDir:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="vs-mail-")
        self.data = os.path.join(self.tmp, "data")
        os.makedirs(self.data)

    def cli(self, *args, input=None, env=None, timeout=60):
        r = run_cli(["smtp"] + list(args) + ["--data", self.data],
                    input=input, env=env, timeout=timeout)
        if r.stderr:
            print("  smtp %s -> %d: %s" % (args[0], r.returncode,
                                           r.stderr.strip().splitlines()[0]))
        return r

    def set(self, *args, input=None):
        r = self.cli("set", *args, input=input)
        assert r.returncode == 0, r.stderr
        return r

    def audit(self):
        db = sqlite3.connect(os.path.join(self.data, "server.db"))
        try:
            return db.execute("SELECT event_type, user_id, device_id, ip, message"
                              " FROM server_audit_log ORDER BY id").fetchall()
        finally:
            db.close()

    def smtp_rows(self):
        db = sqlite3.connect(os.path.join(self.data, "server.db"))
        try:
            return dict(db.execute("SELECT key, value FROM server_smtp_config"))
        finally:
            db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        remove_writer_queue(os.path.join(self.data, "server.db"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def parsed(envelope):
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


def check_test_mail(envelope, to):
    raw = envelope.original_content
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(b < 0x80 for b in head), "8-bit header bytes (D23)"
    msg = parsed(envelope)
    assert str(msg["Subject"]) == TEST_SUBJECT, msg["Subject"]
    assert msg["From"] == FROM and msg["To"] == to
    assert msg["Date"] and msg["Message-ID"], "Date and Message-ID (D23)"
    assert msg.get_content().strip() == "This is a test email from Verstak Sync Server."
    assert envelope.mail_from == FROM and envelope.rcpt_tos == [to]


def test_set_show_and_plaintext_test_mail():
    with DataDir() as d, Server() as srv:
        r = d.set("--host", "127.0.0.1", "--port", str(srv.port),
                  "--security", "none", "--from", "NoReply@Example.com",
                  "--server-url", "https://sync.example.com/")
        assert "smtp_host" in r.stdout
        rows = d.smtp_rows()
        assert rows["smtp_from"] == FROM and rows["smtp_security"] == "none"
        assert "smtp_pass" not in rows
        show = d.cli("show")
        assert show.returncode == 0, show.stderr
        assert f"smtp_port: {srv.port}" in show.stdout
        assert "smtp_pass: (not set)" in show.stdout
        assert "link base: https://sync.example.com\n" in show.stdout
        r = d.cli("test")
        assert r.returncode == 0, r.stderr
        assert len(srv.sink.messages) == 1
        check_test_mail(srv.sink.messages[0], FROM)
        r = d.cli("test", "--to", "other@example.org")
        assert r.returncode == 0, r.stderr
        check_test_mail(srv.sink.messages[1], "other@example.org")
        events = [row[0] for row in d.audit()]
        assert events == ["smtp_settings_updated", "smtp_test_passed",
                          "smtp_test_passed"], events
        assert d.audit()[0][1:] == ("", "", "", "updated by administrator")
        assert d.audit()[1][4] == "tested by administrator"


def test_set_rejects_bad_values_and_keeps_password():
    with DataDir() as d:
        for args in (["--security", "ssl"], ["--port", "0"], ["--port", "x"],
                     ["--from", "Evil <a@example.com>"],
                     ["--from", "a@example.com\r\nBcc: b@example.com"],
                     ["--server-url", "javascript:alert(1)"],
                     ["--host", "mail example.com"]):
            r = d.cli("set", *args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert d.cli("set").returncode == 2
        assert d.cli("set", "--pass-file", "/x", "--pass-stdin").returncode == 2
        d.set("--user", "me", "--pass-stdin", input="first-secret\n")
        assert d.smtp_rows()["smtp_pass"] == "first-secret"
        # An empty password keeps the stored one (DATA.md 6).
        r = d.cli("set", "--pass-stdin", input="\n")
        assert r.returncode == 1
        d.set("--host", "mail.example.com", "--pass-stdin", input="")
        assert d.smtp_rows()["smtp_pass"] == "first-secret"
        show = d.cli("show")
        assert "smtp_pass: (set)" in show.stdout
        assert "first-secret" not in show.stdout + show.stderr
        assert "link base: none" in show.stdout
        assert d.cli("show", "--data", d.data).returncode == 2  # given twice
        r = run_cli(["smtp", "show", "--data", os.path.join(d.tmp, "missing")])
        assert r.returncode == 1 and "does not exist" in r.stderr


def test_starttls_required_but_not_offered():
    """D22: security starttls against a server without STARTTLS: nothing
    is delivered and the refusal is reported."""
    with DataDir() as d, Server() as srv:
        d.set("--host", "127.0.0.1", "--port", str(srv.port),
              "--security", "starttls", "--from", FROM)
        r = d.cli("test")
        assert r.returncode == 1
        assert "does not offer STARTTLS" in r.stderr, r.stderr
        assert srv.sink.messages == []
        # Empty/unknown security behaves as starttls (DATA.md 6).
        db = sqlite3.connect(os.path.join(d.data, "server.db"))
        db.execute("UPDATE server_smtp_config SET value = 'bogus'"
                   " WHERE key = 'smtp_security'")
        db.commit()
        db.close()
        r = d.cli("test")
        assert r.returncode == 1 and "does not offer STARTTLS" in r.stderr
        assert srv.sink.messages == []
        assert [row[0] for row in d.audit()][-2:] == ["smtp_test_failed"] * 2


def test_silent_server_times_out():
    """D21: a server that accepts and never answers, in every security
    mode: the test fails within the deadline (shortened to 3 s here;
    30 s in production)."""
    with DataDir() as d, socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        port = lsock.getsockname()[1]
        for security in ("none", "starttls", "tls"):
            d.set("--host", "127.0.0.1", "--port", str(port),
                  "--security", security, "--from", FROM)
            t0 = time.monotonic()
            r = d.cli("test", env=FAST)
            took = time.monotonic() - t0
            assert r.returncode == 1, r.stderr
            assert took < 10, f"{security}: took {took:.1f}s"  # 3 s + slack for a loaded machine
            assert "timed out" in r.stderr, r.stderr


def test_connect_timeout():
    """D21: a connect that never completes (the listener's accept queue
    is full, so SYNs go unanswered) is given up after the connect
    timeout: 10 s, here 2 s under the shortened deadline."""
    with DataDir() as d, socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                fillers.append(c)
            for security in ("none", "tls"):
                d.set("--host", "127.0.0.1", "--port", str(port),
                      "--security", security, "--from", FROM)
                t0 = time.monotonic()
                r = d.cli("test", env=FAST)
                took = time.monotonic() - t0
                assert r.returncode == 1
                assert "connecting to 127.0.0.1" in r.stderr, r.stderr
                assert "timed out after 2 s" in r.stderr, r.stderr
                assert took < 10, f"took {took:.1f}s"  # 2 s + slack for a loaded machine
        finally:
            for c in fillers:
                c.close()


def test_auth_plain_to_loopback():
    auth = Auth("mailer", "s3cret pass")
    with DataDir() as d, Server(authenticator=auth, auth_require_tls=False,
                                auth_required=True,
                                auth_exclude_mechanism=["LOGIN"]) as srv:
        d.set("--host", "127.0.0.1", "--port", str(srv.port), "--security", "none",
              "--from", FROM, "--user", "mailer", "--pass-stdin",
              input="s3cret pass\n")
        r = d.cli("test")
        assert r.returncode == 0, r.stderr
        assert auth.seen == ["PLAIN"], auth.seen
        assert len(srv.sink.messages) == 1
        d.set("--pass-stdin", input="wrong\n")
        r = d.cli("test")
        assert r.returncode == 1
        assert "authentication" in r.stderr, r.stderr
        assert "wrong" not in r.stderr
        assert len(srv.sink.messages) == 1


def test_auth_refused_over_plaintext_to_remote_host():
    with DataDir() as d:
        d.set("--host", "mail.example.invalid", "--port", "587", "--security", "none",
              "--from", FROM, "--user", "u", "--pass-stdin", input="pw-123456\n")
        r = d.cli("test")
        assert r.returncode == 1
        assert "refusing to send the SMTP password" in r.stderr, r.stderr


def test_starttls_certificate_checks():
    with DataDir() as d:
        certs = Certs(d.tmp)
        auth = Auth("mailer", "pw-over-tls")
        with Server(tls_context=certs.server_ctx(), authenticator=auth,
                    auth_required=True) as srv:
            d.set("--host", "localhost", "--port", str(srv.port),
                  "--security", "starttls", "--from", FROM, "--user", "mailer",
                  "--pass-stdin", input="pw-over-tls\n")
            # Untrusted self-signed certificate: must fail (correct).
            r = d.cli("test")
            assert r.returncode == 1
            assert "certificate verification failed" in r.stderr, r.stderr
            assert srv.sink.messages == [] and auth.seen == []
            # Trusted through SSL_CERT_FILE: delivered, AUTH after
            # STARTTLS. Several times: TLS 1.3 session tickets arrive at
            # varying moments after the handshake (libesmtp's own
            # STARTTLS used to hang on them).
            for _ in range(5):
                r = d.cli("test", env=certs.trust())
                assert r.returncode == 0, r.stderr
            assert len(srv.sink.messages) == 5 and auth.seen
            assert "localhost" in certs.sni, "SNI was not sent"
            check_test_mail(srv.sink.messages[0], FROM)
            # Right certificate, wrong name: 127.0.0.1 is not in it.
            d.set("--host", "127.0.0.1")
            r = d.cli("test", env=certs.trust())
            assert r.returncode == 1
            assert "certificate verification failed" in r.stderr, r.stderr
            assert len(srv.sink.messages) == 5


def test_implicit_tls():
    with DataDir() as d:
        certs = Certs(d.tmp)
        with Server(ssl_context=certs.server_ctx()) as srv:
            d.set("--host", "localhost", "--port", str(srv.port),
                  "--security", "tls", "--from", FROM)
            r = d.cli("test", env=FAST)
            assert r.returncode == 1
            assert "certificate verification failed" in r.stderr, r.stderr
            assert srv.sink.messages == []
            for _ in range(3):
                r = d.cli("test", env=certs.trust())
                assert r.returncode == 0, r.stderr
            assert len(srv.sink.messages) == 3
            check_test_mail(srv.sink.messages[0], FROM)
            assert "localhost" in certs.sni
        # A plaintext server on a tls port: the handshake fails, nothing
        # falls back to plaintext.
        with Server() as plain:
            d.set("--port", str(plain.port))
            r = d.cli("test", env=dict(FAST, **certs.trust()))
            assert r.returncode == 1
            assert plain.sink.messages == []


if __name__ == "__main__":
    run_tests(dict(globals()))
