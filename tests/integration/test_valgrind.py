"""The worker's request loop under valgrind: a real stack whose one
worker runs under memcheck serves every kind of request the worker knows
(success, each error path, bodies over the cap), then stops; memcheck
must report no error and no definite or indirect leak.

Skipped (reported as passed with nothing run) in the sanitizer build,
where ASan/LSan already watch every test and valgrind cannot run the
instrumented binary."""
import glob
import os
import re
import shutil
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SANITIZED, Stack, run_cli, run_tests  # noqa: E402


def exercise(s):
    r = run_cli(["user", "add", "--data", s.data, "--username", "val",
                 "--email", "val@example.org", "--password-stdin", "--confirmed"],
                input="val-password\n")
    assert r.returncode == 0, r.stderr
    assert s.get("/api/v1/health").status == 200
    assert s.get("/livez").status == 200
    assert s.get("/nope").status == 404
    assert s.get("/api/nope").status == 404
    assert s.post("/api/v1/health", b"x").status == 405
    assert s.get("/a//b").status == 301
    assert s.post("/api/client/pair", b"{").status == 400
    assert s.post("/api/client/pair", b"{} {}").status == 400
    assert s.post("/api/client/pair", b"x" * (3 * 1024 * 1024)).status == 413
    r = s.post("/api/client/pair", {"login": "val", "password": "val-password",
                                    "device_name": "v", "client_version": "v",
                                    "vault_id": "v"})
    assert r.status == 200, r
    tok = {"Authorization": "Bearer " + r.json()["device_token"]}
    assert s.get("/api/client/me", headers=tok).status == 200
    assert s.get("/api/client/me").status == 401
    ops = [{"op_id": f"vg-{i}", "entity_type": "file", "entity_id": "a.md",
            "op_type": "update", "payload_json": "{}", "client_sequence": i,
            "last_seen_server_seq": 1, "created_at": "x"} for i in range(30)]
    assert s.post("/api/v1/sync/push", {"ops": ops, "idempotency_key": "k"},
                  headers=tok).status == 200
    assert s.post("/api/v1/sync/push", {"ops": ops, "idempotency_key": "k"},
                  headers=tok).status == 200
    assert s.post("/api/v1/sync/push", {"ops": [{"op_id": ""}]},
                  headers=tok).status == 400
    assert s.post("/api/v1/sync/pull", {"since_sequence": 0}, headers=tok).status == 200
    assert s.post("/api/v1/sync/pull", {"since_sequence": -1}, headers=tok).status == 400
    assert s.post("/api/auth/test", {"username": "val", "password": "bad-password"}).status == 401
    # Pushes that queue up behind each other: the worker holds their
    # answers back and syncs them together (worker.c), so the parked
    # path and its buffers run under memcheck too.
    statuses = []

    def pusher(t):
        for i in range(6):
            op = {"op_id": f"vgc-{t}-{i}", "entity_type": "file", "entity_id": f"c{t}.md",
                  "op_type": "update", "payload_json": "{}", "client_sequence": i,
                  "last_seen_server_seq": 0, "created_at": "x"}
            statuses.append(s.post("/api/v1/sync/push", {"ops": [op]}, headers=tok).status)
    threads = [threading.Thread(target=pusher, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 48, statuses
    assert s.post("/api/client/revoke-current", b"", headers=tok).status == 200


def test_worker_loop_has_no_leaks_under_valgrind():
    if SANITIZED:
        print("skipped: sanitizer build")
        return
    if shutil.which("valgrind") is None:
        raise AssertionError("valgrind is not installed (scripts/deps.sh test)")
    s = Stack(workers=1)
    logdir = os.path.join(s.tmp, "vg")
    os.makedirs(logdir)
    s.env["VERSTAK_WORKER_WRAPPER"] = (
        "valgrind --leak-check=full --show-leak-kinds=definite,indirect "
        "--errors-for-leak-kinds=definite,indirect --error-exitcode=99 "
        f"--log-file={logdir}/vg-%p.log")
    try:
        s.start(timeout=90)
        exercise(s)
        assert s.stop() == 0
        # The one worker logs, when it stops, how many answers it held
        # back: the queued pushes above must have made it park some.
        with open(os.path.join(s.tmp, "stack.log"), errors="replace") as f:
            m = re.search(r"group commit: (\d+) answers held back, sent after (\d+)"
                          r" syncs", f.read())
        assert m and int(m.group(1)) > int(m.group(2)), (
            "no sync covered more than one answer: " + (m.group(0) if m else "no log line"))
        logs = glob.glob(os.path.join(logdir, "vg-*.log"))
        assert logs, "valgrind wrote no log"
        for log in logs:
            text = open(log).read()
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            assert m and m.group(1) == "0", text[-3000:]
            for kind in ("definitely lost", "indirectly lost"):
                m = re.search(kind + r": ([\d,]+) bytes", text)
                assert m is None or m.group(1) == "0", text[-3000:]
    finally:
        s.cleanup()


if __name__ == "__main__":
    run_tests(dict(globals()))
