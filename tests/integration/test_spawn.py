"""The system deployment's process model: spawn-fcgi hands a listening
socket to multiwatch, which keeps N workers of this binary running. The
worker must recognise the socket on standard input without any flag,
answer FastCGI, be replaced when killed, and stop on SIGTERM."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fcgi_client  # noqa: E402
from harness import BINARY, children_of, processes_mentioning, remove_writer_queue, run_tests  # noqa: E402


def find(prog):
    p = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/usr/bin")
    if p is None:
        raise AssertionError(f"{prog} is not installed (scripts/deps.sh)")
    return p


def workers_of(mw_pid):
    return sorted(pid for pid, cmd in children_of(mw_pid) if BINARY in cmd)


def test_spawn_fcgi_and_multiwatch_pool():
    tmp = tempfile.mkdtemp(prefix="vs-spawn-")
    data = os.path.join(tmp, "data")
    sock = os.path.join(tmp, "fcgi.sock")
    proc = subprocess.Popen(
        [find("spawn-fcgi"), "-n", "-s", sock, "-M", "0600", "--",
         find("multiwatch"), "-f", "2", "-s", "TERM", "--", BINARY, "--data", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        status = None
        while time.time() < deadline:
            try:
                status, headers, body = fcgi_client.request(sock, "GET", "/api/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200, (status, proc.stderr)
        j = json.loads(body)
        assert j["status"] == "ok" and j["schema_version"] == 2
        assert headers["content-type"] == "application/json"
        assert headers["x-frame-options"] == "DENY"
        # multiwatch runs spawn-fcgi's exec: the pid we started is multiwatch.
        ws = workers_of(proc.pid)
        assert len(ws) == 2, ws
        os.kill(ws[0], signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline:
            now = workers_of(proc.pid)
            if len(now) == 2 and ws[0] not in now:
                break
            time.sleep(0.05)
        assert len(workers_of(proc.pid)) == 2 and ws[0] not in workers_of(proc.pid)
        for _ in range(20):
            assert fcgi_client.request(sock, "GET", "/livez")[0] == 200
        s, _, b = fcgi_client.request(sock, "POST", "/api/client/pair", b"{")
        assert s == 400 and json.loads(b)["code"] == "invalid_json"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        deadline = time.time() + 5
        while processes_mentioning(data) and time.time() < deadline:
            time.sleep(0.1)
        assert not processes_mentioning(data)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_mentioning(data):
            os.kill(pid, signal.SIGKILL)
        remove_writer_queue(os.path.join(data, "server.db"))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests(dict(globals()))
