"""Blob upload and download through the real stack (API.md 3.8, SYNC.md 7,
DATA.md 1, D13, D24, D25): the desktop's flow (upload, file op, download
on another device, Range), dedup, chunked uploads, every refusal with
blobs/ listed before and after, quotas, a full disk (LD_PRELOAD fault
injector, tests/faultfs.c), the D24 repair, nginx's part of a download
(Content-Length, Last-Modified, Range, conditional requests, security
headers), worker memory during a large upload, the Go fixture's blobs,
and garbage collection racing uploads.

D25 (progress-based limits) runs with a stall limit of a few seconds
(VERSTAK_UPLOAD_STALL_SECONDS); VS_SLOW_TESTS=1 adds the same at the
default 60 s (a throttled upload and a stalled one, about 2 minutes)."""
import hashlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BINARY, SANITIZED, SRCDIR, copy_fixture,  # noqa: E402
                     load_manifest, run_cli, run_tests)
from harness import Stack as _Stack  # noqa: E402

BOUNDARY = "----verstakTestBoundary7MA4YWxkTrZu0gW"
SEC_HEADERS = {
    "content-security-policy": "default-src 'self'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'; img-src 'self' data:; "
    "script-src 'self'; style-src 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}

# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------

# Text in the stack's log that means a worker crashed or a sanitizer
# caught something (the stack replaces a dead worker, so the HTTP side
# alone would not notice).
BAD_LOG = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
           "; replacing")


class Stack(_Stack):
    """The harness's stack, failing the test if its log shows a worker
    crash or a sanitizer report."""

    def cleanup(self):
        try:
            self.stop()
        except AssertionError:
            pass
        log = ""
        try:
            with open(os.path.join(self.tmp, "stack.log")) as f:
                log = f.read()
        except OSError:
            pass
        super().cleanup()
        bad = [w for w in BAD_LOG if w in log]
        assert not bad, f"stack log shows {bad}:\n{log[-3000:]}"



def write_config(stack, text):
    with open(os.path.join(stack.data, "config.yml"), "w") as f:
        f.write(text)


def db_connect(stack):
    return sqlite3.connect(os.path.join(stack.data, "server.db"), timeout=30)


def sql(stack, query, args=()):
    db = db_connect(stack)
    try:
        rows = db.execute(query, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def add_user(stack, name):
    r = run_cli(["user", "add", "--data", stack.data, "--username", name,
                 "--email", f"{name}@example.org", "--password-stdin",
                 "--confirmed"], input=f"{name}-password\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def pair(stack, user, vault, name="host"):
    # pairing is rate limited per IP; these tests pair many devices
    sql(stack, "DELETE FROM vs_rate_buckets")
    r = stack.post("/api/client/pair", {
        "login": user, "password": f"{user}-password", "device_name": name,
        "client_version": "verstak-desktop/test", "vault_id": vault})
    assert r.status == 200, r
    return r.json()


def auth(token):
    return {"Authorization": "Bearer " + token}


def form(content, name="file", filename="blob.bin", boundary=BOUNDARY,
         extra_parts=()):
    disp = f'form-data; name="{name}"'
    if filename is not None:
        disp += f'; filename="{filename}"'
    head = (f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = b"".join(extra_parts) + f"\r\n--{boundary}--\r\n".encode()
    return head, tail


def multipart_body(content, **kw):
    head, tail = form(content, **kw)
    return head + content + tail


def ctype(boundary=BOUNDARY):
    return f"multipart/form-data; boundary={boundary}"


def upload(stack, token, content, chunked=False, **kw):
    """POSTs content as the one file part; returns the Response."""
    body = multipart_body(content, **kw)
    headers = dict(auth(token))
    headers["Content-Type"] = ctype(kw.get("boundary", BOUNDARY))
    if not chunked:
        return stack.post("/api/v1/blobs/", body, headers=headers, timeout=120)
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=120)
    try:
        pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
        conn.request("POST", "/api/v1/blobs/", body=pieces, headers=headers,
                     encode_chunked=True)
        r = conn.getresponse()
        return Resp(r)
    finally:
        conn.close()


class Resp:
    def __init__(self, r):
        self.status = r.status
        self.headers = [(k.lower(), v) for k, v in r.getheaders()]
        self.body = r.read()

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


def download(stack, token, sha, headers=None):
    h = dict(auth(token))
    h.update(headers or {})
    return stack.get("/api/v1/blobs/" + sha, headers=h, timeout=120)


def expect_error(r, status, code, error=None):
    assert r.status == status, (r.status, r.body[:300])
    j = json.loads(r.body)
    assert j["code"] == code, j
    if error is not None:
        assert j["error"] == error, j
    assert len(r.body) < 500


def listing(stack):
    """Every path under blobs/, sorted (files and directories)."""
    root = os.path.join(stack.data, "blobs")
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def blob_path(stack, sha):
    return os.path.join(stack.data, "blobs", sha[:2], sha[2:4], sha)


def counts(stack):
    return (sql(stack, "SELECT COUNT(*) FROM server_blobs")[0][0],
            sql(stack, "SELECT COUNT(*) FROM server_blob_refs")[0][0])


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_gc(stack, *extra):
    r = run_cli(["gc", "--data", stack.data] + list(extra))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    report = {}
    for line in r.stdout.splitlines():
        key, _, rest = line.partition(": ")
        report[key] = int(rest.split()[0])
    return report


def push_file_op(stack, token, path, sha, size):
    op = {"op_id": str(uuid.uuid4()), "entity_type": "file",
          "entity_id": path, "op_type": "create",
          "payload_json": json.dumps({"path": path, "contentHash": sha,
                                      "blob": {"sha256": sha, "size": size}}),
          "client_sequence": 1, "last_seen_server_seq": 0,
          "created_at": "2026-11-25T00:00:00Z"}
    r = stack.post("/api/v1/sync/push", {"device_id": "x", "ops": [op]},
                   headers=auth(token))
    assert r.status == 200, r
    assert r.json()["accepted"] == [op["op_id"]]
    return op


# ---------------------------------------------------------------------
# The desktop's flow and nginx's part of a download
# ---------------------------------------------------------------------


def test_desktop_flow_upload_push_download_range():
    with Stack(workers=2) as s:
        add_user(s, "alice")
        laptop = pair(s, "alice", "vault-1", "laptop")
        desktop = pair(s, "alice", "vault-1", "desktop")
        content = os.urandom(3 * 1024 * 1024 + 17)
        sha = hashlib.sha256(content).hexdigest()

        # upload with the hash as file name, as the desktop does; chunked
        r = upload(s, laptop["device_token"], content, chunked=True, filename=sha)
        assert r.status == 200, r.body
        assert r.json() == {"sha256": sha, "size": len(content)}
        assert r.header("content-type") == "application/json"
        for k, v in SEC_HEADERS.items():
            assert r.header(k) == v
        push_file_op(s, laptop["device_token"], "Media/photo.jpg", sha, len(content))

        # the other device pulls the op and downloads the blob
        r = s.post("/api/v1/sync/pull", {"since_sequence": 0},
                   headers=auth(desktop["device_token"]))
        payload = json.loads(r.json()["ops"][0]["payload_json"])
        ref = payload["blob"]
        r = download(s, desktop["device_token"], ref["sha256"])
        assert r.status == 200
        assert int(r.header("content-length")) == ref["size"] == len(r.body)
        assert hashlib.sha256(r.body).hexdigest() == ref["sha256"]
        assert r.header("content-type") == "application/octet-stream"
        assert r.header("content-disposition") == f'attachment; filename="{sha}"'
        assert r.header("accept-ranges") == "bytes"
        assert r.header("content-encoding") is None
        last_modified = r.header("last-modified")
        assert last_modified
        for k, v in SEC_HEADERS.items():
            assert r.headers_named(k) == [v], (k, r.headers_named(k))
        assert r.header("x-accel-redirect") is None

        # Range and conditional requests, answered by nginx
        r = download(s, desktop["device_token"], sha, {"Range": "bytes=100-199"})
        assert r.status == 206
        assert r.body == content[100:200]
        assert r.header("content-range") == f"bytes 100-199/{len(content)}"
        r = download(s, desktop["device_token"], sha, {"Range": "bytes=-10"})
        assert r.status == 206 and r.body == content[-10:]
        r = download(s, desktop["device_token"], sha,
                     {"Range": f"bytes={len(content) + 5}-"})
        assert r.status == 416, r
        r = download(s, desktop["device_token"], sha,
                     {"If-Modified-Since": last_modified})
        assert r.status == 304 and r.body == b""
        r = download(s, desktop["device_token"], sha,
                     {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
        assert r.status == 412
        r = download(s, desktop["device_token"], sha,
                     {"Range": "bytes=0-9", "If-Range": last_modified})
        assert r.status == 206 and r.body == content[:10]
        r = download(s, desktop["device_token"], sha,
                     {"Range": "bytes=0-9",
                      "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"})
        assert r.status == 200 and len(r.body) == len(content)

        # the internal location cannot be reached from outside
        r = s.get(f"/_verstak_blobs/{sha[:2]}/{sha[2:4]}/{sha}")
        assert r.status == 404

        # same content again in the same scope: one file, one reference,
        # the same answer (multipart with Content-Length this time)
        before = listing(s)
        r = upload(s, laptop["device_token"], content, filename="other-name")
        assert r.status == 200 and r.json() == {"sha256": sha, "size": len(content)}
        assert listing(s) == before
        assert counts(s) == (1, 1)
        assert not [p for p in listing(s) if ".upload-" in p]
        mode = os.stat(blob_path(s, sha)).st_mode & 0o777
        assert mode == 0o640, oct(mode)
        for d in (os.path.dirname(blob_path(s, sha)),
                  os.path.dirname(os.path.dirname(blob_path(s, sha)))):
            assert os.stat(d).st_mode & 0o777 == 0o750

        # empty content is a blob too
        r = upload(s, laptop["device_token"], b"")
        assert r.status == 200
        assert r.json() == {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}
        r = download(s, desktop["device_token"], hashlib.sha256(b"").hexdigest())
        assert r.status == 200 and r.body == b"" and r.header("content-length") == "0"


def test_scopes_auth_methods_and_hashes():
    with Stack(workers=2) as s:
        add_user(s, "alice")
        add_user(s, "bob")
        a = pair(s, "alice", "vault-1")
        a_other_vault = pair(s, "alice", "vault-2")
        b_same_vault_name = pair(s, "bob", "vault-1")
        content = os.urandom(5000)
        sha = upload(s, a["device_token"], content).json()["sha256"]
        for dev in (a_other_vault, b_same_vault_name):
            expect_error(download(s, dev["device_token"], sha), 404,
                         "blob_not_found", "blob not found")
        # unauthenticated DELETE: 401 before 405
        expect_error(s.request("DELETE", "/api/v1/blobs/" + sha), 401,
                     "unauthorized", "API key required")
        expect_error(s.get("/api/v1/blobs/" + sha, headers=auth("nope")), 401,
                     "unauthorized", "invalid API key")
        for method in ("DELETE", "HEAD", "PUT", "OPTIONS"):
            r = s.request(method, "/api/v1/blobs/" + sha, headers=auth(a["device_token"]))
            assert r.status == 405, (method, r)
            assert r.header("allow") == "GET, POST"
            if method != "HEAD":
                expect_error(r, 405, "method_not_allowed")
        # api_key query parameter works for downloads too
        r = s.get(f"/api/v1/blobs/{sha}?api_key={a['device_token']}")
        assert r.status == 200 and r.body == content
        # anything but 64 lowercase hex
        bad = ["", "abc", sha.upper(), sha + "0", sha[:-1], sha + "/",
               sha[:2] + "/" + sha[2:4] + "/" + sha, "g" + sha[1:],
               "%2e%2e%2f%2e%2e%2fserver.db", "..%2F..%2Fconfig.yml",
               sha[:32] + "%41" + sha[33:], sha[:32] + "%2F" + sha[33:]]
        for rest in bad:
            r = s.get("/api/v1/blobs/" + rest, headers=auth(a["device_token"]))
            if r.status in (301, 404) and r.header("location") is not None:
                continue  # the router's canonical-path redirect
            expect_error(r, 400, "invalid_blob_hash", "invalid SHA-256")
        r = s.get("/api/v1/blobs/../../server.db", headers=auth(a["device_token"]))
        assert r.status in (301, 404) and b"SQLite" not in r.body
        # a broken file: wrong size -> 500, missing -> 404
        with open(blob_path(s, sha), "ab") as f:
            f.write(b"x")
        expect_error(download(s, a["device_token"], sha), 500, "blob_unavailable",
                     "blob is unavailable")
        os.unlink(blob_path(s, sha))
        expect_error(download(s, a["device_token"], sha), 404, "blob_not_found")


def test_reupload_repairs_missing_or_truncated_file_d24():
    with Stack(workers=2) as s:
        add_user(s, "carl")
        d = pair(s, "carl", "v")
        content = os.urandom(200000)
        sha = upload(s, d["device_token"], content).json()["sha256"]
        path = blob_path(s, sha)
        with open(path, "r+b") as f:
            f.truncate(1000)
        expect_error(download(s, d["device_token"], sha), 500, "blob_unavailable")
        assert upload(s, d["device_token"], content).status == 200
        r = download(s, d["device_token"], sha)
        assert r.status == 200 and r.body == content
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
        expect_error(download(s, d["device_token"], sha), 404, "blob_not_found")
        assert upload(s, d["device_token"], content, chunked=True).status == 200
        r = download(s, d["device_token"], sha)
        assert r.status == 200 and r.body == content
        assert counts(s) == (1, 1)


def test_concurrent_uploads_of_the_same_content():
    with Stack(workers=4) as s:
        add_user(s, "dora")
        add_user(s, "emil")
        devs = [pair(s, "dora", "v1"), pair(s, "dora", "v2"),
                pair(s, "emil", "v1"), pair(s, "dora", "v1")]
        content = os.urandom(700000)
        sha = hashlib.sha256(content).hexdigest()
        results = []

        def go(dev):
            for _ in range(3):
                results.append(upload(s, dev["device_token"], content).status)

        threads = [threading.Thread(target=go, args=(d,)) for d in devs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 12, results
        assert counts(s) == (1, 3)  # three scopes, one physical blob
        assert listing(s) == sorted([sha[:2], f"{sha[:2]}/{sha[2:4]}",
                                     f"{sha[:2]}/{sha[2:4]}/{sha}"])
        for dev in devs:
            assert download(s, dev["device_token"], sha).body == content


def test_worker_memory_does_not_grow_with_the_blob():
    if SANITIZED:
        return  # ASan's allocator makes RSS meaningless
    with Stack(workers=2) as s:
        add_user(s, "fred")
        d = pair(s, "fred", "v")
        for i in range(6):  # warm every worker up
            assert upload(s, d["device_token"], os.urandom(300000)).status == 200
        # uploads are served by the upload pool
        before = {pid: vm_hwm_kib(pid) for pid in s.upload_pids()}
        assert len(before) == s.upload_workers
        content = os.urandom(48 * 1024 * 1024)
        r = upload(s, d["device_token"], content, chunked=True)
        assert r.status == 200, r.body
        assert r.json()["sha256"] == hashlib.sha256(content).hexdigest()
        growth = max(vm_hwm_kib(pid) - kib for pid, kib in before.items())
        print(f"     worker peak RSS growth: {growth} KiB")
        assert growth < 4 * 1024, f"worker peak RSS grew by {growth} KiB"


# ---------------------------------------------------------------------
# Limits, quotas and malformed bodies: blobs/ is left exactly as it was
# ---------------------------------------------------------------------

LIMITS = """limits:
    max_json_body: 65536
    max_blob_bytes: 65536
    max_vault_blob_bytes: 163840
    max_user_blob_bytes: 262144
"""


def test_limits_quotas_and_refusals_leave_no_residue():
    with Stack(workers=2) as s:
        s.stop()
        write_config(s, LIMITS)
        s.start()
        add_user(s, "gina")
        v1 = pair(s, "gina", "v1")
        v2 = pair(s, "gina", "v2")
        v3 = pair(s, "gina", "v3")
        tok = v1["device_token"]

        def refused(r, status, code, error=None):
            expect_error(r, status, code, error)
            assert listing(s) == before, (listing(s), before)
            assert counts(s) == rows_before

        # fill a little first, so "unchanged" has something to compare
        assert upload(s, tok, os.urandom(1000)).status == 200
        before, rows_before = listing(s), counts(s)

        # 413 blob_too_large: one byte over, chunked and not; and a body
        # over nginx's cap (max(max_blob, max_json) + 1 MiB)
        refused(upload(s, tok, os.urandom(65537)), 413, "blob_too_large",
                "blob is too large")
        refused(upload(s, tok, os.urandom(65537), chunked=True), 413,
                "blob_too_large")
        refused(upload(s, tok, os.urandom(1200 * 1024)), 413, "blob_too_large")
        refused(upload(s, tok, os.urandom(1200 * 1024), chunked=True), 413,
                "blob_too_large")
        # the limit itself is fine
        at_limit = os.urandom(65536)
        assert upload(s, tok, at_limit).status == 200
        assert upload(s, tok, os.urandom(65536)).status == 200
        before, rows_before = listing(s), counts(s)

        # vault quota: 1000 + 2 * 65536 used of 163840
        refused(upload(s, tok, os.urandom(40000)), 413, "quota_exceeded",
                "blob quota exceeded")
        # ... but content the vault already has is not charged again
        assert upload(s, tok, at_limit).status == 200
        assert listing(s) == before and counts(s) == rows_before
        # user quota: 262144 over all vaults
        assert upload(s, v2["device_token"], os.urandom(65536)).status == 200
        assert upload(s, v2["device_token"], os.urandom(60000)).status == 200
        before, rows_before = listing(s), counts(s)
        refused(upload(s, v3["device_token"], os.urandom(10000)), 413,
                "quota_exceeded", "blob quota exceeded")

        # malformed requests
        h = dict(auth(tok))
        cases = [
            ({}, multipart_body(b"x"), "invalid multipart request"),
            ({"Content-Type": "application/json"}, b"{}", "invalid multipart request"),
            ({"Content-Type": "multipart/form-data"}, multipart_body(b"x"),
             "invalid multipart request"),
            ({"Content-Type": ctype()}, b"", "invalid multipart request"),
            ({"Content-Type": ctype()}, f"--{BOUNDARY}--\r\n".encode(),
             "file field is required"),
            ({"Content-Type": ctype()},
             f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
             "invalid multipart request"),
            ({"Content-Type": ctype()}, multipart_body(b"x", name="upload"),
             "exactly one file field is required"),
            ({"Content-Type": ctype()}, multipart_body(b"x", filename=None),
             "exactly one file field is required"),
            ({"Content-Type": ctype()}, multipart_body(b"x", filename=""),
             "exactly one file field is required"),
            ({"Content-Type": ctype()},
             f"--{BOUNDARY}\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
             "exactly one file field is required"),
            ({"Content-Type": ctype()},
             multipart_body(os.urandom(30000), extra_parts=[
                 f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
                 f"name=\"file\"; filename=\"b\"\r\n\r\nsecond".encode()]),
             "exactly one file field is required"),
            ({"Content-Type": ctype()}, multipart_body(os.urandom(30000))[:-10],
             "invalid multipart request"),
        ]
        for extra, body, msg in cases:
            hh = dict(h)
            hh.update(extra)
            refused(s.post("/api/v1/blobs/", body, headers=hh), 400,
                    "invalid_multipart", msg)
        # auth comes before the body is looked at
        expect_error(s.post("/api/v1/blobs/", b"junk"), 401, "unauthorized")
        assert listing(s) == before and counts(s) == rows_before


# ---------------------------------------------------------------------
# A failing disk (LD_PRELOAD fault injector)
# ---------------------------------------------------------------------


def build_faultfs(tmp):
    so = os.path.join(tmp, "faultfs.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so,
                    os.path.join(SRCDIR, "tests", "faultfs.c"), "-ldl"],
                   check=True)
    return so


def test_disk_full_and_io_errors_answer_507_without_residue():
    tmp = tempfile.mkdtemp(prefix="vs-faultfs-")
    try:
        so = build_faultfs(tmp)
        ctl = os.path.join(tmp, "fault.ctl")
        open(ctl, "w").close()
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": so, "VS_FAULT_CTL": ctl,
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        with Stack(workers=2, env=env) as s:
            add_user(s, "hugo")
            d = pair(s, "hugo", "v")
            tok = d["device_token"]
            assert upload(s, tok, os.urandom(10000)).status == 200
            before, rows_before = listing(s), counts(s)
            workers = s.worker_pids() + s.upload_pids()
            content = os.urandom(900000)
            for plan in ("write_after=300000\n", "write_after=0\nerrno=EIO\n",
                         "write_after=500000\nerrno=EDQUOT\n", "fsync=1\nerrno=EIO\n"):
                with open(ctl, "w") as f:
                    f.write(plan)
                for chunked in (False, True):
                    r = upload(s, tok, content, chunked=chunked)
                    expect_error(r, 507, "insufficient_storage", "insufficient storage")
                    assert listing(s) == before, (plan, listing(s))
                    assert counts(s) == rows_before
            assert s.worker_pids() + s.upload_pids() == workers, "a worker died"
            with open(ctl, "w") as f:
                f.write("")
            r = upload(s, tok, content)
            assert r.status == 200
            r_ok_sha = r.json()["sha256"]
            assert download(s, tok, r_ok_sha).body == content

            # The directory fsync after the commit fails: the rows are
            # in, but the blob is not acknowledged. A later fsync that
            # succeeds proves nothing about the lost write, so every
            # write is refused (reads go on) until the server restarts.
            other = os.urandom(20000)
            sha = hashlib.sha256(other).hexdigest()
            with open(ctl, "w") as f:
                f.write(f"fsync=1\nerrno=EIO\nmarker=/blobs/{sha[:2]}/{sha[2:4]}\n")
            r = upload(s, tok, other)
            expect_error(r, 507, "insufficient_storage", "insufficient storage")
            assert s.worker_pids() + s.upload_pids() == workers, "a worker died"
            with open(ctl, "w") as f:
                f.write("")
            r = upload(s, tok, other)
            expect_error(r, 500, "internal_error", "internal error")
            r = s.post("/api/v1/sync/push", {"ops": [{"op_id": "after-eio",
                       "entity_type": "note", "entity_id": "n",
                       "op_type": "create", "payload_json": "{}"}]},
                       headers={"Authorization": "Bearer " + tok})
            expect_error(r, 500, "internal_error", "internal error")
            assert download(s, tok, r_ok_sha).body == content
            s.stop()
            s.start()
            r = upload(s, tok, other)
            assert r.status == 200 and r.json()["sha256"] == sha, r
            assert download(s, tok, sha).body == other
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------
# The Go server's fixture
# ---------------------------------------------------------------------


def test_fixture_blobs_for_owners_only():
    m = load_manifest()
    s = Stack(workers=2)
    try:
        copy_fixture(s.data)
        s.start()
        users = {name: u["id"] for name, u in m["users"].items()}
        scope = {name: (users[d["user"]], d["vault_id"])
                 for name, d in m["devices"].items()}
        for blob in m["blobs"].values():
            owner_scopes = {scope[o] for o in blob["owners"]}
            for name, dev in m["devices"].items():
                r = download(s, dev["token"], blob["sha256"])
                if dev.get("revoked"):
                    expect_error(r, 401, "unauthorized", "device revoked")
                elif scope[name] in owner_scopes:
                    assert r.status == 200, (name, r)
                    assert int(r.header("content-length")) == blob["size"]
                    assert hashlib.sha256(r.body).hexdigest() == blob["sha256"]
                else:
                    expect_error(r, 404, "blob_not_found")
        # an owner re-uploading the content changes nothing on disk
        photo = m["blobs"]["photo"]
        with open(blob_path(s, photo["sha256"]), "rb") as f:
            content = f.read()
        before = listing(s)
        r = upload(s, m["devices"]["alice-laptop"]["token"], content)
        assert r.json() == {"sha256": photo["sha256"], "size": photo["size"]}
        assert listing(s) == before
    finally:
        s.cleanup()


# ---------------------------------------------------------------------
# Garbage collection (D13)
# ---------------------------------------------------------------------


def backdate_blobs(stack):
    sql(stack, "UPDATE server_blobs SET created_at = '2020-01-01T00:00:00Z'")


def test_gc_removes_orphans_after_grace_only():
    with Stack(workers=2) as s:
        add_user(s, "ida")
        add_user(s, "jan")
        ida = pair(s, "ida", "v")
        jan = pair(s, "jan", "v")
        shared = os.urandom(50000)
        own = os.urandom(70000)
        sha_shared = upload(s, ida["device_token"], shared).json()["sha256"]
        assert upload(s, jan["device_token"], shared).status == 200
        sha_own = upload(s, ida["device_token"], own).json()["sha256"]
        # temp uploads: an old one (a dead request) and a fresh one
        old_tmp = os.path.join(s.data, "blobs", ".upload-deadbeef")
        new_tmp = os.path.join(s.data, "blobs", ".upload-inflight")
        for p in (old_tmp, new_tmp):
            with open(p, "wb") as f:
                f.write(b"x" * 1234)
        os.utime(old_tmp, (time.time() - 25 * 3600,) * 2)

        # nothing unreferenced yet; the old temp upload goes
        rep = run_gc(s)
        assert rep["unreferenced blobs removed"] == 0
        assert rep["temp uploads removed"] == 1
        assert not os.path.exists(old_tmp) and os.path.exists(new_tmp)
        os.unlink(new_tmp)

        r = run_cli(["user", "delete", "--data", s.data, "--username", "ida"])
        assert r.returncode == 0, r.stderr
        # inside the grace period: kept
        assert run_gc(s)["unreferenced blobs removed"] == 0
        assert os.path.exists(blob_path(s, sha_own))
        # a grace shorter than temp_upload_hours is refused
        r = run_cli(["gc", "--data", s.data, "--grace-hours", "1"])
        assert r.returncode == 2 and "temp_upload_hours" in r.stderr
        backdate_blobs(s)
        rep = run_gc(s)
        assert rep["unreferenced blobs removed"] == 1
        assert rep["freed"] == len(own)
        assert not os.path.exists(blob_path(s, sha_own))
        # Jan still references the shared one
        assert os.path.exists(blob_path(s, sha_shared))
        r = download(s, jan["device_token"], sha_shared)
        assert r.status == 200 and r.body == shared
        # a longer grace keeps what the default would remove
        r = run_cli(["user", "delete", "--data", s.data, "--username", "jan"])
        assert r.returncode == 0, r.stderr
        sql(s, "UPDATE server_blobs SET created_at = ?",
            (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 3600)),))
        assert run_gc(s, "--grace-hours", "48")["unreferenced blobs removed"] == 0
        assert run_gc(s)["unreferenced blobs removed"] == 1
        assert listing(s) == sorted([sha_shared[:2], f"{sha_shared[:2]}/{sha_shared[2:4]}",
                                     sha_own[:2], f"{sha_own[:2]}/{sha_own[2:4]}"])
        assert counts(s) == (0, 0)


def test_gc_racing_uploads_always_ends_downloadable():
    with Stack(workers=3) as s:
        add_user(s, "kim")
        d = pair(s, "kim", "v")
        tok = d["device_token"]
        for round_ in range(8):
            content = os.urandom(100000 + round_)
            sha = upload(s, tok, content).json()["sha256"]
            # the reference goes away (user deletion does this), the row
            # is past its grace period: GC wants the file
            sql(s, "DELETE FROM server_blob_refs")
            backdate_blobs(s)
            results = []
            t = threading.Thread(target=lambda: results.append(
                upload(s, tok, content, chunked=bool(round_ % 2)).status))
            gc = subprocess.Popen([BINARY, "gc", "--data", s.data],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.002 * round_)
            t.start()
            t.join()
            assert gc.wait(timeout=60) == 0, gc.stderr.read()
            gc.stdout.close()
            gc.stderr.close()
            assert results == [200]
            r = download(s, tok, sha)
            assert r.status == 200 and r.body == content, (round_, r.status)
            # and a later collection leaves it alone
            run_gc(s)
            assert download(s, tok, sha).status == 200


# ---------------------------------------------------------------------
# D25: progress-based limits, 408 on a stall; the upload pool
# ---------------------------------------------------------------------


def raw_upload_head(stack, token, head, content, tail, path="/api/v1/blobs/",
                    chunked=False):
    """A raw connection with the request head of a multipart upload sent
    (Content-Length of head + content + tail, or chunked), and head after
    it (as one chunk when chunked). token None: no Authorization."""
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=120)
    total = len(head) + len(content) + len(tail)
    auth_line = f"Authorization: Bearer {token}\r\n" if token else ""
    length = ("Transfer-Encoding: chunked\r\n" if chunked
              else f"Content-Length: {total}\r\n")
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth_line}"
                  f"Content-Type: {ctype()}\r\n{length}Connection: close\r\n\r\n"
                  ).encode())
    sock.sendall(b"%x\r\n%s\r\n" % (len(head), head) if chunked else head)
    return sock


def read_all(sock):
    """What came back until the server closed ("" when it reset)."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


def raw_upload(stack, token, head, content, tail, rate=None, stop_after=None):
    """Sends a multipart upload with Content-Length over a raw socket,
    at `rate` bytes/s, or stopping after `stop_after` content bytes.
    Returns what came back ("" when the server reset the connection)."""
    sock = raw_upload_head(stack, token, head, content, tail)
    step = 10000
    for i in range(0, len(content), step):
        if stop_after is not None and i >= stop_after:
            break
        sock.sendall(content[i:i + step])
        if rate:
            time.sleep(step / rate)
    if stop_after is None:
        sock.sendall(tail)
    return read_all(sock)


def temp_uploads(stack):
    return [n for n in os.listdir(os.path.join(stack.data, "blobs"))
            if n.startswith(".upload-")]


TIMEOUT_JSON = b'{"error":"request timed out","code":"request_timeout"}'


def test_stalled_upload_answers_408_and_slow_one_succeeds_d25():
    """D25: nginx streams an upload's body to the upload pool as it
    arrives, and the worker gives up on a body that brings no byte for
    the stall limit (3 s here, 60 s by default): 408 request_timeout in
    JSON, before nginx's own body timeout (which would only close the
    connection), for a body with Content-Length or chunked, stalled
    before or after its first content byte, and for a POST to any path
    under /api/v1/blobs/ (API.md 3.8: all are uploads); no temp file, no
    row, and the worker serves the next upload. A slow upload whose gaps
    stay under the limit, but which takes longer than the limit in all,
    is stored: the limit counts from the last byte, not from the start."""
    with Stack(workers=2, upload_workers=1,
               env={"VERSTAK_UPLOAD_STALL_SECONDS": "3"}) as s:
        add_user(s, "liv")
        tok = pair(s, "liv", "v")["device_token"]
        content = os.urandom(100000)
        head, tail = form(content)
        before, rows = listing(s), counts(s)
        cases = [dict(stop=0), dict(stop=30000),
                 dict(stop=30000, path="/api/v1/blobs/any/where"),
                 dict(stop=0, chunked=True), dict(stop=30000, chunked=True)]
        for case in cases:
            sock = raw_upload_head(s, tok, head, content, tail,
                                   path=case.get("path", "/api/v1/blobs/"),
                                   chunked=case.get("chunked", False))
            part = content[:case["stop"]]
            if part:
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part)
                             if case.get("chunked") else part)
            data = read_all(sock)
            assert data.startswith(b"HTTP/1.1 408"), (case, data[:300])
            assert data.rstrip().endswith(TIMEOUT_JSON), (case, data[-200:])
            assert listing(s) == before and counts(s) == rows, case
            assert temp_uploads(s) == [], case
        # 10 pieces 0.5 s apart: ~5 s in all, more than the limit
        t0 = time.time()
        data = raw_upload(s, tok, head, content, tail, rate=20000)
        assert time.time() - t0 > 4
        assert data.startswith(b"HTTP/1.1 200"), data[:300]
        sha = hashlib.sha256(content).hexdigest()
        assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {
            "sha256": sha, "size": len(content)}
        assert download(s, tok, sha).body == content
        assert "stalled" in s.stderr()


def test_refused_upload_is_answered_before_its_body_ends():
    """An upload refused before its body is read (here: no token) is
    answered at once, not after the rest of a slowly sent body: with one
    upload worker and a client that sends a little and then holds the
    connection open, the 401 arrives long before the 60 s stall limit,
    and the next upload finds the worker free."""
    with Stack(workers=2, upload_workers=1,
               env={"VERSTAK_UPLOAD_STALL_SECONDS": "60"}) as s:
        add_user(s, "liv")
        tok = pair(s, "liv", "v")["device_token"]
        content = os.urandom(1000000)
        head, tail = form(content)
        for chunked in (False, True):
            sock = raw_upload_head(s, None, head, content, tail, chunked=chunked)
            sock.settimeout(30)  # half the stall limit
            data = sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 401"), data[:300]
            sock.close()
        assert upload(s, tok, content[:5000]).status == 200


def serving(pid):
    """Whether a worker holds a FastCGI connection: a socket besides its
    listening socket on fd 0."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if fd != "0" and os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n > 0


def test_stalled_uploads_hold_upload_workers_only():
    """Slow and stalled uploads hold workers of the upload pool, never
    the workers that serve sync: with every upload worker inside a
    stalled body, a push, a pull and a download are answered while the
    stalled uploads are still waiting for their bytes (nothing has come
    back on their connections yet)."""
    with Stack(workers=2, upload_workers=2,
               env={"VERSTAK_UPLOAD_STALL_SECONDS": "60"}) as s:
        add_user(s, "liv")
        tok = pair(s, "liv", "v")["device_token"]
        stored = os.urandom(5000)
        sha = hashlib.sha256(stored).hexdigest()
        assert upload(s, tok, stored).status == 200
        content = os.urandom(200000)
        head, tail = form(content)
        stuck = []
        for _ in range(2):
            stuck.append(raw_upload_head(s, tok, head, content, tail))
            stuck[-1].sendall(content[:50000])
        try:
            # both upload workers hold a stalled upload's connection
            deadline = time.time() + 20
            busy = 0
            while time.time() < deadline:
                busy = sum(1 for pid in s.upload_pids() if serving(pid))
                if busy == 2:
                    break
                time.sleep(0.05)
            assert busy == 2, busy
            r = s.post("/api/v1/sync/push", {"device_id": "d", "ops": [
                {"op_id": "iso-1", "entity_type": "file", "entity_id": "a.md",
                 "op_type": "create", "payload_json": "{}", "client_sequence": 1,
                 "last_seen_server_seq": 0, "created_at": "2026-12-01T00:00:00Z"}]},
                headers=auth(tok), timeout=20)
            assert r.status == 200 and r.json()["accepted"] == ["iso-1"], r
            r = s.post("/api/v1/sync/pull", {"since": 0}, headers=auth(tok), timeout=20)
            assert r.status == 200 and [o["op_id"] for o in r.json()["ops"]] == ["iso-1"]
            assert download(s, tok, sha).body == stored
            for sock in stuck:
                sock.setblocking(False)
                try:
                    got = sock.recv(1)
                except BlockingIOError:
                    got = None
                assert got is None, "a stalled upload was answered already"
                sock.setblocking(True)
        finally:
            for sock in stuck:
                sock.close()


def test_slow_upload_succeeds_and_stalled_upload_answers_408_at_60s_d25():
    """D25 at the default limit (VS_SLOW_TESTS=1): a 3 MB upload at
    100 kB/s (30 s, longer than the reference's whole-request limit) is
    stored, and one that stops after 500 kB is answered 408
    request_timeout 60 s after its last byte, with nothing left behind."""
    if os.environ.get("VS_SLOW_TESTS") != "1":
        return
    with Stack(workers=2) as s:
        add_user(s, "liv")
        tok = pair(s, "liv", "v")["device_token"]
        content = os.urandom(3 * 1000 * 1000)
        head, tail = form(content)
        t0 = time.time()
        data = raw_upload(s, tok, head, content, tail, rate=100000)
        assert time.time() - t0 > 30  # longer than the reference's limit
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        before, rows = listing(s), counts(s)
        t0 = time.time()
        data = raw_upload(s, tok, head, content, tail, stop_after=500000)
        assert 55 < time.time() - t0 < 75
        assert data.startswith(b"HTTP/1.1 408") and \
            b'"code":"request_timeout"' in data, data[:200]
        assert listing(s) == before and counts(s) == rows
        assert temp_uploads(s) == []


if __name__ == "__main__":
    run_tests(globals())
