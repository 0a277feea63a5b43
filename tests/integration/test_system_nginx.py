"""The system deployment's nginx configuration (nginx/verstak.conf), run
for real: the file as shipped, with only its host-specific lines pointed
at a temporary directory (listen ports, certificate, socket, data and
static paths), included in an http block the way Debian's nginx.conf
includes sites-enabled/*, in front of two spawn-fcgi + multiwatch pools (the
workers and the upload workers, as the two systemd units run them).

It is a hand-maintained mirror of the configuration the binary generates
for its local stack (src/nginxconf.c), so everything the local stack's
tests rely on from nginx is checked here again through it: JSON errors
under /api/ (also for requests nginx refuses itself), the security
headers, static files, the HTTP -> HTTPS redirect, the blob body limit,
and downloads handed to nginx by X-Accel-Redirect with Range."""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BINARY, SRCDIR, free_port, processes_mentioning,  # noqa: E402
                     remove_writer_queue, run_cli, run_tests)

CONF = os.path.join(SRCDIR, "nginx", "verstak.conf")


def find(prog):
    p = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/usr/bin")
    if p is None:
        raise AssertionError(f"{prog} is not installed (scripts/deps.sh)")
    return p


class SystemStack:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="vs-sysnginx-")
        self.data = os.path.join(self.tmp, "data")
        self.sock = os.path.join(self.tmp, "fcgi.sock")
        self.upload_sock = os.path.join(self.tmp, "upl.sock")
        self.http_port = free_port()
        self.https_port = free_port()
        self.pool = None
        self.upload_pool = None
        self.nginx = None

    def _site(self):
        with open(CONF) as f:
            text = f.read()
        subs = [
            (r"listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            (r"listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
            (r"\n *listen \[::\]:\d+( ssl)?;", ""),
            (r"/etc/letsencrypt/live/sync\.example\.org/fullchain\.pem",
             os.path.join(self.tmp, "cert.pem")),
            (r"/etc/letsencrypt/live/sync\.example\.org/privkey\.pem",
             os.path.join(self.tmp, "key.pem")),
            (r"/run/verstak/fcgi\.sock", self.sock),
            (r"/run/verstak-uploads/fcgi\.sock", self.upload_sock),
            (r"/var/lib/verstak/", self.data + "/"),
            (r"/usr/share/verstak-sync-server/static/",
             os.path.join(SRCDIR, "static") + "/"),
        ]
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl.replace("\\", "\\\\"), text)
            assert n > 0, f"{pattern} not found in {CONF}: the test needs updating"
        # Nothing host-specific may be left that nginx would try to use.
        for left in ("/etc/", "/run/verstak", "/var/lib/verstak", "/usr/share"):
            assert left not in re.sub(r"#.*", "", text), left
        return text

    def start(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", os.path.join(self.tmp, "key.pem"),
                        "-out", os.path.join(self.tmp, "cert.pem"), "-days", "2",
                        "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
        r = run_cli(["migrate", "--data", self.data])
        assert r.returncode == 0, r.stderr
        self.pool = subprocess.Popen(
            [find("spawn-fcgi"), "-n", "-s", self.sock, "-M", "0600", "--",
             find("multiwatch"), "-f", "2", "-s", "TERM", "--", BINARY,
             "--data", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the upload pool as its unit runs it, with a short stall limit
        self.upload_pool = subprocess.Popen(
            [find("spawn-fcgi"), "-n", "-s", self.upload_sock, "-M", "0600", "--",
             find("multiwatch"), "-f", "2", "-s", "TERM", "--", BINARY,
             "--fcgi-worker", "--upload-pool", "--data", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, VERSTAK_UPLOAD_STALL_SECONDS="2"))
        with open(os.path.join(self.tmp, "site.conf"), "w") as f:
            f.write(self._site())
        t = self.tmp
        main = (("user root root;\n" if os.geteuid() == 0 else "") +
                f"daemon off;\nworker_processes 1;\npid {t}/nginx.pid;\n"
                f"error_log {t}/error.log error;\nevents {{ worker_connections 256; }}\n"
                "http {\n    access_log off;\n    types { text/css css; }\n"
                f"    client_body_temp_path {t}/body;\n    fastcgi_temp_path {t}/fcgi;\n"
                f"    proxy_temp_path {t}/proxy;\n    uwsgi_temp_path {t}/uwsgi;\n"
                f"    scgi_temp_path {t}/scgi;\n    include {t}/site.conf;\n}}\n")
        with open(os.path.join(t, "nginx.conf"), "w") as f:
            f.write(main)
        nginx = os.environ.get("VS_NGINX") or find("nginx")
        test = subprocess.run([nginx, "-t", "-p", t, "-c", f"{t}/nginx.conf",
                               "-e", f"{t}/error.log"], capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        self.nginx = subprocess.Popen([nginx, "-p", t, "-c", f"{t}/nginx.conf",
                                       "-e", f"{t}/error.log"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.get("/livez").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the system configuration never answered")

    def request(self, method, path, body=None, headers=None, tls=True):
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.https_port,
                                               timeout=30, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            hdrs = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path, **kw):
        class R:
            pass
        out = R()
        out.status, out.headers, out.body = self.request("GET", path, **kw)
        return out

    def stop(self):
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        for pool in (self.pool, self.upload_pool):
            if pool is None or pool.poll() is not None:
                continue
            pool.send_signal(signal.SIGTERM)
            try:
                pool.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pool.kill()
                pool.wait()
        for pid in processes_mentioning(self.tmp):
            os.kill(pid, signal.SIGKILL)
        remove_writer_queue(os.path.join(self.data, "server.db"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def multipart(content, name="file", filename="x.bin"):
    boundary = "vsSysNginxBoundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def stalled_upload(s, authorization, body):
    """Sends the head and half the body of an upload, then nothing."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", s.https_port, timeout=30,
                                       context=ctx)
    try:
        conn.putrequest("POST", "/api/v1/blobs/")
        conn.putheader("Authorization", authorization)
        conn.putheader("Content-Type",
                       "multipart/form-data; boundary=vsSysNginxBoundary7")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:len(body) // 2])
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_system_configuration_end_to_end():
    s = SystemStack()
    try:
        s.start()
        st, h, b = s.request("GET", "/api/v1/health")
        assert st == 200 and json.loads(b)["schema_version"] == 2, (st, b)
        assert h["x-frame-options"] == "DENY" and "default-src 'self'" in \
            h["content-security-policy"]

        # plain HTTP only redirects
        st, h, _ = s.request("GET", "/api/v1/health?x=1", tls=False)
        assert st == 301 and h["location"].startswith("https://"), (st, h)
        assert h["location"].endswith("/api/v1/health?x=1")

        # errors: the application's, and nginx's own, JSON under /api/
        st, h, b = s.request("GET", "/api/v1/nothing-here")
        assert st == 404 and json.loads(b)["code"] == "not_found"
        for path, status, code in (("/api/v1/health%00", 400, "invalid_request"),
                                   ("/api/v1/" + "a" * 20000, 414, "invalid_request")):
            st, h, b = s.request("GET", path)
            assert st == status and json.loads(b)["code"] == code, (path[:40], st, b)
            assert h["x-content-type-options"] == "nosniff"
        st, h, b = s.request("GET", "/dashboard%00")
        assert st == 400 and b"<html" in b.lower(), (st, b)
        st, _, b = s.request("TRACE", "/api/v1/health")
        assert st == 405 and json.loads(b)["code"] == "method_not_allowed"

        # static files from nginx, no listing
        st, h, b = s.request("GET", "/static/app.css")
        with open(os.path.join(SRCDIR, "static", "app.css"), "rb") as f:
            assert st == 200 and b == f.read()
        st, _, _ = s.request("GET", "/static/")
        assert st == 404

        # a device, an upload, a download handed to nginx, a Range
        r = run_cli(["user", "add", "--data", s.data, "--username", "sys",
                     "--email", "sys@example.org", "--password-stdin", "--confirmed"],
                    input="sys-password-1\n")
        assert r.returncode == 0, r.stderr
        st, _, b = s.request("POST", "/api/client/pair",
                             {"login": "sys", "password": "sys-password-1",
                              "device_name": "d", "client_version": "t",
                              "vault_id": "v"})
        assert st == 200, b
        auth = {"Authorization": "Bearer " + json.loads(b)["device_token"]}
        content = os.urandom(300 * 1024)
        sha = hashlib.sha256(content).hexdigest()
        body, hdrs = multipart(content, filename=sha)
        hdrs.update(auth)
        st, _, b = s.request("POST", "/api/v1/blobs/", body, hdrs)
        assert st == 200 and json.loads(b) == {"sha256": sha, "size": len(content)}, b
        st, h, b = s.request("GET", "/api/v1/blobs/" + sha, headers=auth)
        assert st == 200 and b == content, (st, len(b))
        assert int(h["content-length"]) == len(content)
        assert h["x-frame-options"] == "DENY"
        st, h, b = s.request("GET", "/api/v1/blobs/" + sha,
                             headers=dict(auth, Range="bytes=100-199"))
        assert st == 206 and b == content[100:200], (st, h)
        st, _, b = s.request("GET", "/api/v1/blobs/" + "0" * 64, headers=auth)
        assert st == 404 and json.loads(b)["code"] == "blob_not_found"
        st, _, _ = s.request("GET", "/_verstak_blobs/" + sha[:2] + "/" + sha[2:4] +
                             "/" + sha)
        assert st == 404  # internal location

        # D25: an upload that stops sending is answered 408 by the upload
        # worker (2 s here), before nginx's own body timeout would close
        # the connection without an answer
        st, b = stalled_upload(s, auth["Authorization"], body)
        assert st == 408 and json.loads(b)["code"] == "request_timeout", (st, b)
        assert not [n for n in os.listdir(os.path.join(s.data, "blobs"))
                    if n.startswith(".upload-")]

        # the blob route's own body limit (max_blob_bytes + 1 MiB)
        st, _, b = s.request("POST", "/api/v1/blobs/", b"x",
                             dict(auth, **{"Content-Length": str(300 * 1024 * 1024)}))
        assert st == 413 and json.loads(b)["code"] == "blob_too_large", (st, b)

        with open(os.path.join(s.tmp, "error.log")) as f:
            log = f.read()
        assert "empty URI in redirect" not in log and "[emerg]" not in log, log
    finally:
        s.stop()
    assert not os.path.exists(s.tmp)


if __name__ == "__main__":
    run_tests(globals())
