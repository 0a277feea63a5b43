"""The system deployment's process model: spawn-fcgi hands a listening
socket to multiwatch, which keeps N workers of this binary running. The
worker must recognise the socket on standard input without any flag,
answer FastCGI, be replaced when killed, and stop on SIGTERM."""
import json
import os
import shutil
import signal
import socket
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


class Pool:
    """spawn-fcgi + multiwatch running n workers of this binary on a
    socket of a fresh directory; stop() ends and removes it all."""

    def __init__(self, n):
        self.tmp = tempfile.mkdtemp(prefix="vs-spawn-")
        self.data = os.path.join(self.tmp, "data")
        self.sock = os.path.join(self.tmp, "fcgi.sock")
        self.proc = subprocess.Popen(
            [find("spawn-fcgi"), "-n", "-s", self.sock, "-M", "0600", "--",
             find("multiwatch"), "-f", str(n), "-s", "TERM", "--", BINARY,
             "--data", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def first_answer(self, uri):
        """The first answer the pool gives to GET uri, waiting for it."""
        deadline = time.time() + 20
        while True:
            try:
                return fcgi_client.request(self.sock, "GET", uri)
            except OSError:
                assert time.time() < deadline, self.proc.stderr
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in processes_mentioning(self.data):
            os.kill(pid, signal.SIGKILL)
        remove_writer_queue(os.path.join(self.data, "server.db"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_spawn_fcgi_and_multiwatch_pool():
    pool = Pool(2)
    proc, sock, data = pool.proc, pool.sock, pool.data
    try:
        status, headers, body = pool.first_answer("/api/v1/health")
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
        pool.stop()


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1]
                           for line in f)
    except OSError:
        return False


def settled_fds(pid):
    """What pid's descriptors point to, once it holds no connection: the
    one a client has just read its answer from may not be closed yet."""
    deadline = time.time() + 5
    while True:
        listening = os.readlink(f"/proc/{pid}/fd/0")
        fds = sorted(os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd"))
        if fds.count(listening) == 1 and sum(1 for f in fds if f.startswith("socket:")) == 1:
            return fds
        assert time.time() < deadline, fds
        time.sleep(0.05)


def test_bad_connections_and_a_stop_under_load():
    """The worker accepts its connections itself and hands them to libfcgi:
    one that closes at once, sends garbage or stops inside its first
    record must cost it nothing (no descriptor kept, the next request
    answered). And SIGTERM must stop a worker that never runs out of
    requests: it only waits for a signal when idle, so it has to look for
    one between requests."""
    pool = Pool(1)
    proc, sock = pool.proc, pool.sock
    try:
        assert pool.first_answer("/livez")[0] == 200
        (w,) = workers_of(proc.pid)
        for _ in range(5):
            assert fcgi_client.request(sock, "GET", "/api/v1/health")[0] == 200
        fds = settled_fds(w)
        for i in range(30):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            if i % 3 == 1:
                c.sendall(b"not a FastCGI record at all")
            elif i % 3 == 2:
                c.sendall(bytes([1, 1, 0]))  # three bytes of a header
            c.close()
        for _ in range(5):
            assert fcgi_client.request(sock, "GET", "/api/v1/health")[0] == 200
        assert workers_of(proc.pid) == [w]
        assert settled_fds(w) == fds

        # A queue of slow requests (each a bcrypt verification, D28: an
        # unknown login costs as much as a known one; every one from its
        # own address, so no rate limit cuts it short). The worker is
        # stopped while they queue, let go, and told to stop while it
        # serves the first: it must leave after that one, not after all.
        os.kill(w, signal.SIGSTOP)
        queued = []
        for i in range(60):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            body = json.dumps({"login": f"nobody-{i}", "password": "not the password",
                               "device_name": "d", "client_version": "t",
                               "vault_id": "v"}).encode()
            c.sendall(fcgi_client.encode("POST", "/api/client/pair", body,
                                         {"Content-Type": "application/json"},
                                         remote_addr=f"10.9.{i}.1"))
            queued.append(c)
        os.kill(w, signal.SIGCONT)
        time.sleep(0.02)
        os.kill(w, signal.SIGTERM)
        t0 = time.time()
        while alive(w) and time.time() - t0 < 20:
            time.sleep(0.01)
        took = time.time() - t0
        for c in queued:
            c.close()
        assert not alive(w)
        # 60 verifications take 3 s or more; one, about 50 ms.
        assert took < 1.5, f"the worker served its queue for {took:.2f} s after SIGTERM"
    finally:
        pool.stop()


if __name__ == "__main__":
    run_tests(dict(globals()))
