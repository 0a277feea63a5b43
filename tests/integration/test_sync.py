"""Desktop sync through the real stack: pairing, device-token auth,
push and pull as the desktop client does them, concurrency across
workers, the Go server's fixture, and the client routes' errors."""
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Stack, copy_fixture, load_manifest,  # noqa: E402
                     processes_mentioning, run_cli, run_tests)
from desktop import Desktop  # noqa: E402


def add_user(stack, name, password, confirmed=True, email=None):
    args = ["user", "add", "--data", stack.data, "--username", name,
            "--email", email or f"{name}@example.org", "--password-stdin"]
    if confirmed:
        args.append("--confirmed")
    r = run_cli(args, input=password + "\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def pair(stack, login, password, vault, name="host"):
    r = stack.post("/api/client/pair", {
        "login": login, "password": password, "device_name": name,
        "client_version": "verstak-desktop/v2", "vault_id": vault})
    assert r.status == 200, r
    j = r.json()
    assert set(j) == {"user_id", "device_id", "device_token", "server_time",
                      "initial_sync_cursor"}
    assert j["initial_sync_cursor"] == 0 and len(j["device_token"]) == 64
    assert j["device_id"].startswith("dev_") and len(j["device_id"]) == 28
    return j


def auth(token):
    return {"Authorization": "Bearer " + token}


def expect_error(r, status, code, error=None):
    assert r.status == status, (r.status, r.body)
    j = r.json()
    assert j["code"] == code, j
    if error is not None:
        assert j["error"] == error, j
    assert len(r.body) < 500


def test_desktop_protocol_two_devices_and_isolation():
    with Stack(workers=2) as s:
        # A server limit below the desktop's batch size makes the client
        # halve its batches (100 -> 50 -> 25).
        s.stop()
        with open(os.path.join(s.data, "config.yml"), "w") as f:
            f.write("limits:\n    max_push_operations: 40\n")
        s.start()
        add_user(s, "alice", "alice-password")
        add_user(s, "bob", "bob-password")
        a = pair(s, "alice", "alice-password", "vault-1", "laptop")
        b = pair(s, "alice@example.org", "alice-password", "vault-1", "desktop")
        other_vault = pair(s, "alice", "alice-password", "vault-2", "work")
        other_user = pair(s, "bob", "bob-password", "vault-1", "bob")

        da = Desktop(s, a["device_token"], a["device_id"])
        da.sync()
        assert da.applied == []
        da.queue_ops(250)
        queued = [op["op_id"] for op in da.queue]
        da.sync()
        assert da.queue == [], "every op must be acknowledged"
        assert [op["op_id"] for op in da.applied] == queued
        seqs = [op["server_sequence"] for op in da.applied]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(op["device_id"] == a["device_id"] for op in da.applied)

        db2 = Desktop(s, b["device_token"], b["device_id"])
        db2.sync()
        got = [op["op_id"] for op in db2.applied]
        assert got == queued, "second device receives every op exactly once"
        assert db2.cursor == seqs[-1]
        # pages of the default size 100
        r = s.post("/api/v1/sync/pull", {"since_sequence": 0},
                   headers=auth(b["device_token"]))
        page = r.json()
        assert len(page["ops"]) == 100 and page["has_more"] is True
        assert page["page_last_sequence"] == page["ops"][-1]["server_sequence"]
        assert page["server_sequence"] == seqs[-1]

        for other in (other_vault, other_user):
            d = Desktop(s, other["device_token"], other["device_id"])
            d.sync()
            assert d.applied == []

        # A lost response: the same batch sent again is accepted, not stored twice.
        resend = [dict(op, last_seen_server_seq=0) for op in da.applied[:5]]
        for op in resend:
            for k in ("server_sequence", "device_id"):
                op.pop(k, None)
            op.update(client_sequence=1, last_seen_server_seq=0)
        r = s.post("/api/v1/sync/push", {"ops": resend}, headers=auth(a["device_token"]))
        assert r.status == 200 and r.json()["accepted"] == [o["op_id"] for o in resend]
        d3 = Desktop(s, b["device_token"], b["device_id"])
        d3.sync()
        assert [op["op_id"] for op in d3.applied] == queued
        # ...and the same op_id from another user's scope is refused.
        r = s.post("/api/v1/sync/push", {"ops": resend[:1]},
                   headers=auth(other_user["device_token"]))
        expect_error(r, 409, "op_id_conflict")


def test_restored_backup_cursor_ahead_then_sequence_advance():
    """An operator restores an older server.db while devices hold cursors
    from the newer log: pull answers 409 cursor_ahead instead of silently
    skipping every op numbered below those cursors, and after `sequence
    advance` new ops reach the devices again."""
    s = Stack(workers=2)
    try:
        s.start()
        add_user(s, "rita", "rita-password-1")
        a = pair(s, "rita", "rita-password-1", "vault-r", "laptop")
        b = pair(s, "rita", "rita-password-1", "vault-r", "desktop")
        da = Desktop(s, a["device_token"], a["device_id"])
        db_ = Desktop(s, b["device_token"], b["device_id"])
        da.queue_ops(5)
        da.sync()
        db_.sync()
        assert db_.cursor == 5 and len(db_.applied) == 5
        s.stop()
        db_path = os.path.join(s.data, "server.db")
        backup = os.path.join(s.tmp, "server.db.backup")
        # the backup doc/OPERATIONS.md recommends (SQLite's backup API,
        # which also takes what is still in the WAL)
        src, dst = sqlite3.connect(db_path), sqlite3.connect(backup)
        src.backup(dst)
        src.close()
        dst.close()

        s.start()
        da.queue_ops(10)
        da.sync()
        db_.sync()
        assert db_.cursor == 15
        s.stop()
        # a restore replaces the database and drops its WAL and index
        for leftover in (db_path + "-wal", db_path + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        with open(backup, "rb") as src, open(db_path, "wb") as dst:
            dst.write(src.read())

        s.start()
        r = s.post("/api/v1/sync/pull", {"since_sequence": db_.cursor},
                   headers=auth(b["device_token"]))
        expect_error(r, 409, "cursor_ahead",
                     "since_sequence is beyond every sequence this server has issued")
        # new ops are numbered from the restored counter: still behind
        da.cursor = 5
        da.queue_ops(1)
        da.push_all()
        r = s.post("/api/v1/sync/pull", {"since_sequence": db_.cursor},
                   headers=auth(b["device_token"]))
        expect_error(r, 409, "cursor_ahead")

        r = run_cli(["sequence", "show", "--data", s.data])
        assert r.returncode == 0 and r.stdout.strip() == "highest sequence issued: 6", r
        r = run_cli(["sequence", "advance", "--data", s.data, "--by", "1000"])
        assert r.returncode == 0, r.stderr
        assert "from 6 to 1006" in r.stdout, r.stdout
        r = run_cli(["sequence", "advance", "--data", s.data])
        assert r.returncode == 2 and "usage" in r.stderr  # --by is required
        empty = os.path.join(s.tmp, "not-a-data-dir")
        os.mkdir(empty)
        r = run_cli(["sequence", "show", "--data", empty])
        assert r.returncode == 1 and "no server.db" in r.stderr, r
        assert os.listdir(empty) == []  # nothing created there

        db_.sync()  # no error any more, nothing new for it yet
        assert db_.cursor == 15
        da.queue_ops(2)
        da.push_all()
        db_.sync()
        new = [op["server_sequence"] for op in db_.applied[15:]]
        assert new == [1007, 1008], new
    finally:
        s.cleanup()


def test_concurrent_pushers_through_four_workers():
    with Stack(workers=4) as s:
        add_user(s, "carl", "carl-password")
        devices = []
        for i in range(8):
            if i % 4 == 0:
                reset_buckets(s)  # pairing allows 5 per 15 min per IP
            devices.append(pair(s, "carl", "carl-password", "shared", f"d{i}"))
        acked = {}
        errors = []

        def pusher(dev):
            for batch in range(15):
                ops = [{"op_id": str(uuid.uuid4()), "entity_type": "file",
                        "entity_id": f"f{batch % 3}.md", "op_type": "update",
                        "payload_json": "{}", "client_sequence": batch,
                        "last_seen_server_seq": 1, "created_at": "x"}
                       for _ in range(20)]
                r = s.post("/api/v1/sync/push", {"ops": ops},
                           headers=auth(dev["device_token"]))
                if r.status != 200:
                    errors.append((r.status, r.body[:200]))
                    continue
                for op_id in r.json()["accepted"]:
                    acked[op_id] = dev["device_id"]

        threads = [threading.Thread(target=pusher, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(acked) == 8 * 15 * 20
        reader = Desktop(s, devices[0]["device_token"], devices[0]["device_id"])
        reader.pull_all()
        ids = [op["op_id"] for op in reader.applied]
        assert len(ids) == len(set(ids)) == len(acked)
        assert set(ids) == set(acked)
        seqs = [op["server_sequence"] for op in reader.applied]
        assert all(x < y for x, y in zip(seqs, seqs[1:]))
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        n = db.execute("SELECT count(*), count(DISTINCT server_sequence) FROM server_ops").fetchone()
        assert n == (len(acked), len(acked))
        db.close()


def running(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def nginx_holding(path):
    """nginx processes with path open."""
    target = os.path.realpath(path)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("nginx"):
                    continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(int(pid))
                    break
        except OSError:
            continue
    return found


def test_sigkill_of_every_process_loses_no_acknowledged_op():
    """Pushers through four workers; every process of the server (stack,
    nginx, workers) is killed with SIGKILL mid-load. After a restart on
    the same data directory each acknowledged op is there exactly once,
    sequences still strictly increase, and the database is intact."""
    s = Stack(workers=4)
    try:
        s.start()
        add_user(s, "kira", "kira-password")
        devices = []
        for i in range(6):
            if i % 4 == 0:
                reset_buckets(s)
            devices.append(pair(s, "kira", "kira-password", "crash", f"k{i}"))
        acked, stop = set(), threading.Event()
        lock = threading.Lock()

        def pusher(dev):
            n = 0
            while not stop.is_set():
                n += 1
                ops = [{"op_id": str(uuid.uuid4()), "entity_type": "file",
                        "entity_id": f"c{n % 5}.md", "op_type": "update",
                        "payload_json": "{}", "client_sequence": n,
                        "last_seen_server_seq": 0, "created_at": "x"}
                       for _ in range(1 + n % 3)]
                try:
                    r = s.post("/api/v1/sync/push", {"ops": ops},
                               headers=auth(dev["device_token"]), timeout=5)
                except OSError:
                    continue  # the server is gone: nothing acknowledged
                if r.status == 200:
                    with lock:
                        acked.update(r.json()["accepted"])

        threads = [threading.Thread(target=pusher, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        time.sleep(1.5)
        victims = processes_mentioning(s.data)
        assert len(victims) >= 6, victims  # stack, nginx, 4 workers
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) > 50, len(acked)
        s.proc.wait()
        stale = nginx_holding(os.path.join(s.data, "run", "error.log"))
        s.start()  # the same data directory, the same port
        # nginx workers usually outlive a killed master; the new stack
        # stops them (and says so) before it binds their port
        if stale:
            assert "left running by an earlier, crashed run" in s.stderr()
        assert not [pid for pid in stale if running(pid)], stale
        reader = Desktop(s, devices[0]["device_token"], devices[0]["device_id"])
        reader.pull_all()
        ids = [op["op_id"] for op in reader.applied]
        assert len(ids) == len(set(ids))
        assert acked <= set(ids), len(acked - set(ids))
        seqs = [op["server_sequence"] for op in reader.applied]
        assert all(x < y for x, y in zip(seqs, seqs[1:]))
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    finally:
        s.cleanup()


def test_fixture_devices_authenticate_and_pull():
    m = load_manifest()
    s = Stack(workers=2)
    try:
        copy_fixture(s.data)
        s.start()
        for name, dev in m["devices"].items():
            r = s.get("/api/client/me", headers=auth(dev["token"]))
            if dev.get("revoked"):
                expect_error(r, 401, "unauthorized", "device revoked")
                continue
            assert r.status == 200, (name, r)
            assert r.json()["device_id"] == dev["device_id"]
        me = s.get("/api/client/me",
                   headers=auth(m["devices"]["alice-laptop"]["token"])).json()
        want = dict(m["client_me_alice_laptop"])
        assert me.pop("last_seen") and want.pop("last_seen")
        assert me == want
        for name, exp in m["expected_pull"].items():
            token = m["devices"][name]["token"]
            ops, since = [], 0
            while True:
                r = s.post("/api/v1/sync/pull", {"since_sequence": since},
                           headers=auth(token))
                assert r.status == 200, r
                j = r.json()
                ops += j["ops"]
                since = j["page_last_sequence"]
                if not j["has_more"]:
                    break
            assert j["server_sequence"] == exp["server_sequence"], name
            assert ops == exp["ops"], name
        # api_key query fallback works too
        dev = m["devices"]["alice-laptop"]
        r = s.get("/api/client/me?api_key=" + dev["token"])
        assert r.status == 200
    finally:
        s.cleanup()


def test_fixture_idempotency_replay():
    m = load_manifest()
    s = Stack(workers=1)
    try:
        copy_fixture(s.data)
        # The record dates from the fixture's making: with the fixture's
        # 24 h, the start-up retention (DATA.md 2) would delete it, as
        # the reference's would. A server that keeps records longer:
        conf = os.path.join(s.data, "config.yml")
        with open(conf) as f:
            text = f.read()
        assert "idempotency_hours: 24" in text
        with open(conf, "w") as f:
            f.write(text.replace("idempotency_hours: 24", "idempotency_hours: 1000000"))
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        key = m["idempotency_key"]["key"]
        stored = db.execute("SELECT response_json FROM server_idempotency_keys "
                            "WHERE idempotency_key = ?", (key,)).fetchone()[0]
        db.close()
        s.start()
        token = m["devices"][m["idempotency_key"]["device"]]["token"]
        r = s.post("/api/v1/sync/push", {"idempotency_key": key, "ops": [
            {"op_id": "never-stored", "entity_type": "file", "entity_id": "x",
             "op_type": "create", "payload_json": "", "created_at": ""}]},
            headers=auth(token))
        assert r.status == 200
        assert r.body.rstrip(b"\n") == stored.encode()
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        assert db.execute("SELECT count(*) FROM server_ops WHERE op_id='never-stored'").fetchone()[0] == 0
        db.close()
    finally:
        s.cleanup()


LEGACY = ["/api/client/pair", "/api/auth/test", "/api/client/revoke-current",
          "/api/client/revoke-device", "/api/v1/device/register"]


def test_client_route_errors():
    with Stack(workers=2) as s:
        uid = add_user(s, "erin", "erin-password")
        add_user(s, "unconf", "unconf-password", confirmed=False)
        add_user(s, "blocked", "blocked-password")
        assert run_cli(["user", "block", "--data", s.data, "--username",
                        "blocked"]).returncode == 0
        for path in LEGACY:  # D42
            r = s.get(path)
            expect_error(r, 405, "method_not_allowed", "POST required")
            assert r.header("allow") == "POST"
        for path in ("/api/v1/sync/push", "/api/v1/sync/pull"):
            r = s.get(path)
            expect_error(r, 405, "method_not_allowed", "method not allowed")
            assert r.header("allow") == "POST"
        r = s.post("/api/client/me", b"")
        expect_error(r, 405, "method_not_allowed")
        assert r.header("allow") == "GET"

        P = "/api/client/pair"
        base = {"login": "erin", "password": "erin-password", "device_name": "h",
                "client_version": "v", "vault_id": "v1"}
        expect_error(s.post(P, b""), 400, "invalid_json", "invalid JSON request")
        expect_error(s.post(P, b"{} {}"), 400, "trailing_json")
        expect_error(s.post(P, b"{} x"), 400, "invalid_json")
        expect_error(s.post(P, dict(base, login=5)), 400, "invalid_json")
        expect_error(s.post(P, b"[]"), 400, "invalid_json")
        expect_error(s.post(P, dict(base, login="")), 400, "invalid_request",
                     "login and password required")
        expect_error(s.post(P, b"null"), 400, "invalid_request",
                     "login and password required")
        big = b'{"login":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        expect_error(s.post(P, big), 413, "request_too_large")
        # IP bucket for pair is 5 per 15 min; reset it between groups.
        reset_buckets(s)
        expect_error(s.post(P, dict(base, vault_id="  ")), 400, "invalid_request",
                     "vault_id required")
        expect_error(s.post(P, dict(base, vault_id="legacy:x")), 400,
                     "invalid_request", "vault_id uses reserved prefix")
        expect_error(s.post(P, dict(base, login="x" * 321)), 400, "invalid_request",
                     "login is too long")
        expect_error(s.post(P, dict(base, device_name="x" * 129)), 400,
                     "invalid_request", "device name is too long")
        expect_error(s.post(P, dict(base, client_version="x" * 257)), 400,
                     "invalid_request", "client version is too long")
        reset_buckets(s)
        expect_error(s.post(P, dict(base, vault_id="x" * 257)), 400,
                     "invalid_request", "vault id is too long")
        expect_error(s.post(P, dict(base, password="wrong-password")), 401,
                     "unauthorized", "invalid credentials")
        expect_error(s.post(P, dict(base, login="nobody")), 401, "unauthorized",
                     "invalid credentials")
        expect_error(s.post(P, dict(base, login="unconf", password="unconf-password")),
                     403, "forbidden", "email not confirmed")
        expect_error(s.post(P, dict(base, login="blocked", password="blocked-password")),
                     403, "forbidden", "account blocked")
        reset_buckets(s)
        # D28: state is only revealed with the right password
        expect_error(s.post(P, dict(base, login="blocked", password="nope-nope")),
                     401, "unauthorized", "invalid credentials")
        dev = pair(s, "erin", "erin-password", " v1 ", "")
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        row = db.execute("SELECT name, vault_id, api_key, token_hash, legacy_api_key, "
                         "client_version, last_ip FROM server_devices WHERE id=?",
                         (dev["device_id"],)).fetchone()
        assert row[0] == "unknown" and row[1] == "v1"
        assert row[2] == "disabled:" + dev["device_id"] and row[4] == 0
        assert row[3] != dev["device_token"] and len(row[3]) == 64
        assert row[6] == "127.0.0.1"
        audits = [r[0] for r in db.execute(
            "SELECT message FROM server_audit_log WHERE event_type LIKE 'device_%' ORDER BY id")]
        assert "pair: wrong password" in audits and "pair: user not found" in audits
        assert "pair: email not confirmed" in audits and "pair: user blocked" in audits
        assert "device paired: unknown" in audits

        A = "/api/auth/test"
        reset_buckets(s)
        expect_error(s.post(A, {"username": "erin"}), 400, "invalid_request",
                     "username and password required")
        assert s.post(A, {"username": "erin", "password": "erin-password"},
                      headers={"Authorization": "Bearer "}).json() == {"status": "ok"}
        expect_error(s.post(A, {"username": "erin", "password": "bad-password"}),
                     401, "unauthorized", "invalid credentials")
        expect_error(s.post(A, {"username": "unconf", "password": "unconf-password"}),
                     403, "forbidden", "email not confirmed")

        M = "/api/client/me"
        expect_error(s.get(M), 401, "unauthorized", "API key required")
        expect_error(s.get(M, headers=auth("0" * 64)), 401, "unauthorized",
                     "invalid API key")
        r = s.get(M, headers={"Authorization": dev["device_token"]})  # bare token
        assert r.status == 200 and r.json()["user_id"] == uid

        # device/register
        R = "/api/v1/device/register"
        reg = {"name": "old", "username": "erin", "password": "erin-password",
               "vault_id": "v1"}
        reset_buckets(s)
        expect_error(s.post(R, dict(reg, name="")), 400, "invalid_request", "name required")
        expect_error(s.post(R, dict(reg, password="")), 401, "unauthorized",
                     "username and password required")
        expect_error(s.post(R, dict(reg, username="x" * 321)), 400, "invalid_request",
                     "login is too long")
        expect_error(s.post(R, dict(reg, vault_id="")), 400, "invalid_request",
                     "vault_id required")
        expect_error(s.post(R, dict(reg, vault_id="legacy:z")), 400, "invalid_request",
                     "vault_id uses reserved prefix")
        reset_buckets(s)
        r = s.post(R, reg)
        assert r.status == 200 and set(r.json()) == {"device_id", "device_token"}
        legacy_dev = r.json()
        row = db.execute("SELECT client_version, last_ip, last_seen FROM server_devices "
                         "WHERE id=?", (legacy_dev["device_id"],)).fetchone()
        assert row == ("", None, None)

        # revoke-device
        RD = "/api/client/revoke-device"
        H = auth(dev["device_token"])
        expect_error(s.post(RD, {"device_id": legacy_dev["device_id"]}, headers=H), 400,
                     "invalid_request", "device_id and password required")
        expect_error(s.post(RD, {"device_id": legacy_dev["device_id"], "password": "x" * 9},
                            headers=H), 403, "forbidden", "wrong password")
        expect_error(s.post(RD, {"device_id": "dev_nope", "password": "erin-password"},
                            headers=H), 404, "not_found", "device not found")
        reset_buckets(s)
        bob = add_user(s, "bobby", "bobby-password")
        assert bob
        bobdev = pair(s, "bobby", "bobby-password", "vb", "b")
        expect_error(s.post(RD, {"device_id": bobdev["device_id"],
                                 "password": "erin-password"}, headers=H),
                     403, "forbidden", "device does not belong to you")
        r = s.post(RD, {"device_id": legacy_dev["device_id"], "password": "erin-password"},
                   headers=H)
        assert r.status == 200 and r.json() == {"status": "revoked"}
        expect_error(s.get(M, headers=auth(legacy_dev["device_token"])), 401,
                     "unauthorized", "device revoked")
        # a device without a user (seeded legacy key), D33
        db.execute("INSERT INTO server_devices (id, name, api_key, legacy_api_key, "
                   "created_at) VALUES ('legacy-1', 'old', 'plain-key-1', 1, "
                   "'2020-01-01T00:00:00Z')")
        db.commit()
        r = s.get(M, headers=auth("plain-key-1"))
        assert r.status == 200 and r.json()["user_id"] == "" and r.json()["username"] == ""
        expect_error(s.post(RD, {"device_id": "x", "password": "y"},
                            headers=auth("plain-key-1")), 403, "forbidden",
                     "device is not associated with a user")
        expect_error(s.post("/api/v1/sync/pull", {}, headers=auth("plain-key-1")), 403,
                     "forbidden", "device is not associated with a user")
        # D36: a plaintext key with the flag 0 never authenticates
        db.execute("INSERT INTO server_devices (id, name, api_key, legacy_api_key, "
                   "created_at) VALUES ('legacy-2', 'old', 'plain-key-2', 0, 'x')")
        db.commit()
        expect_error(s.get(M, headers=auth("plain-key-2")), 401, "unauthorized")
        # blocked user loses access at once
        assert run_cli(["user", "block", "--data", s.data, "--username",
                        "bobby"]).returncode == 0
        expect_error(s.post("/api/v1/sync/pull", {}, headers=auth(bobdev["device_token"])),
                     403, "forbidden", "user blocked")
        # revoke-current keeps the first time (D37)
        r = s.post("/api/client/revoke-current", b"", headers=H)
        assert r.status == 200 and r.json() == {"status": "revoked"}
        first = db.execute("SELECT revoked_at FROM server_devices WHERE id=?",
                           (dev["device_id"],)).fetchone()[0]
        assert first
        db.close()


def reset_buckets(s):
    db = sqlite3.connect(os.path.join(s.data, "server.db"))
    db.execute("DELETE FROM vs_rate_buckets")
    db.commit()
    db.close()


def test_rate_limit_shared_across_workers_and_restarts():
    s = Stack(workers=3)
    try:
        s.start()
        add_user(s, "frank", "frank-password")
        body = {"login": "frank", "password": "wrong-password", "device_name": "h",
                "client_version": "v", "vault_id": "v"}
        for _ in range(3):
            expect_error(s.post("/api/client/pair", body), 401, "unauthorized")
        assert s.stop() == 0
        s.start()  # D15: state survives a restart
        for _ in range(2):
            expect_error(s.post("/api/client/pair", body), 401, "unauthorized")
        r = s.post("/api/client/pair", body)
        expect_error(r, 429, "rate_limited", "too many attempts")
        retry = int(r.header("retry-after"))
        assert 1 <= retry <= 900
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        n = db.execute("SELECT count(*) FROM server_audit_log WHERE "
                       "event_type='rate_limit_exceeded'").fetchone()[0]
        s.post("/api/client/pair", body)
        n2 = db.execute("SELECT count(*) FROM server_audit_log WHERE "
                        "event_type='rate_limit_exceeded'").fetchone()[0]
        assert n == n2 == 1  # D19
        db.close()
    finally:
        s.cleanup()


def test_last_seen_not_written_on_every_read():
    with Stack(workers=2) as s:
        add_user(s, "gina", "gina-password")
        dev = pair(s, "gina", "gina-password", "v")
        db = sqlite3.connect(os.path.join(s.data, "server.db"))
        before = db.execute("PRAGMA data_version").fetchone()
        changes = db.total_changes
        seen = db.execute("SELECT last_seen FROM server_devices WHERE id=?",
                          (dev["device_id"],)).fetchone()[0]
        for _ in range(30):
            assert s.post("/api/v1/sync/pull", {}, headers=auth(dev["device_token"])).status == 200
        after = db.execute("SELECT last_seen FROM server_devices WHERE id=?",
                           (dev["device_id"],)).fetchone()[0]
        assert after == seen  # refreshed at most once a minute (D38)
        wal = os.path.getsize(os.path.join(s.data, "server.db-wal"))
        for _ in range(30):
            s.post("/api/v1/sync/pull", {}, headers=auth(dev["device_token"]))
        assert os.path.getsize(os.path.join(s.data, "server.db-wal")) == wal
        assert before is not None and changes == 0
        db.close()


def big_text_op():
    text = ("Lorem ipsum \"quoted\" <tag> & more\n" * 60000)[:2 * 1024 * 1024]
    payload = json.dumps({"path": "Big/notes.md", "contentHash": "0" * 64,
                          "content": text})
    return {"op_id": str(uuid.uuid4()), "entity_type": "file",
            "entity_id": "Big/notes.md", "op_type": "create",
            "payload_json": payload, "client_sequence": 1,
            "last_seen_server_seq": 0, "created_at": "2026-11-25T00:00:00Z"}


def test_desktop_sized_text_with_packaged_config():
    """D40: with the configuration the quick start installs, a 2 MiB text
    file inlined by the desktop is accepted and pulled back intact; with
    the Go server's defaults it is refused and start-up warns."""
    src = os.environ.get("VS_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    s = Stack(workers=1)
    try:
        os.makedirs(s.data)
        with open(os.path.join(src, "scripts", "config.yml.default")) as f, \
                open(os.path.join(s.data, "config.yml"), "w") as g:
            g.write(f.read())
        s.start()
        assert "max_payload_json" not in s.stderr()
        add_user(s, "hana", "hana-password")
        dev = pair(s, "hana", "hana-password", "v")
        op = big_text_op()
        r = s.post("/api/v1/sync/push", {"ops": [op]}, headers=auth(dev["device_token"]))
        assert r.status == 200 and r.json()["accepted"] == [op["op_id"]], r
        r = s.post("/api/v1/sync/pull", {}, headers=auth(dev["device_token"]))
        assert r.json()["ops"][0]["payload_json"] == op["payload_json"]
    finally:
        s.cleanup()
    s = Stack(workers=1)
    try:
        s.start()
        assert "max_payload_json" in s.stderr()
        add_user(s, "ivan", "ivan-password")
        dev = pair(s, "ivan", "ivan-password", "v")
        r = s.post("/api/v1/sync/push", {"ops": [big_text_op()]},
                   headers=auth(dev["device_token"]))
        expect_error(r, 413, "request_too_large")
        op = big_text_op()
        op["payload_json"] = op["payload_json"][:400 * 1024]
        r = s.post("/api/v1/sync/push", {"ops": [op]}, headers=auth(dev["device_token"]))
        expect_error(r, 413, "payload_too_large", "operation payload is too large")
    finally:
        s.cleanup()


if __name__ == "__main__":
    run_tests(dict(globals()))
