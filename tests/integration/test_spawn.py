"""The system deployment's process model: spawn-fcgi hands a listening
socket to multiwatch, which keeps N workers of this binary running. The
worker must recognise the socket on standard input without any flag,
answer FastCGI, be replaced when killed, and stop on SIGTERM."""
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fcgi_client  # noqa: E402
from harness import (BINARY, children_of, processes_mentioning,  # noqa: E402
                     remove_writer_queue, run_cli, run_tests)


def find(prog):
    p = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/usr/bin")
    if p is None:
        raise AssertionError(f"{prog} is not installed (scripts/deps.sh)")
    return p


def workers_of(mw_pid):
    return sorted(pid for pid, cmd in children_of(mw_pid) if BINARY in cmd)


class Pool:
    """spawn-fcgi + multiwatch running n workers of this binary on a
    socket of a fresh directory (or on a TCP port of 127.0.0.1 with
    tcp_port); stop() ends and removes it all."""

    def __init__(self, n, tcp_port=None, env=None):
        self.tmp = tempfile.mkdtemp(prefix="vs-spawn-")
        self.data = os.path.join(self.tmp, "data")
        self.sock = os.path.join(self.tmp, "fcgi.sock")
        where = ["-s", self.sock, "-M", "0600"]
        if tcp_port is not None:
            self.sock = ("127.0.0.1", tcp_port)
            where = ["-a", "127.0.0.1", "-p", str(tcp_port)]
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(
            [find("spawn-fcgi"), "-n"] + where + ["--",
             find("multiwatch"), "-f", str(n), "-s", "TERM", "--", BINARY,
             "--data", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e)

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
        # multiwatch may be gone before its workers are: let them finish
        # (their last log lines come at exit) before anything is killed.
        deadline = time.time() + 10
        while processes_mentioning(self.data) and time.time() < deadline:
            time.sleep(0.05)
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


def fds_of(pid):
    try:
        return [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


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


def test_parked_push_does_not_wait_behind_another_route():
    """A push's answer parked for the group commit is sent before the
    worker starts on a request of another route. The other request's
    body is held back until the push's answer has come: a worker that
    started on it first would wait for that body, and the push's answer
    with it."""
    pool = Pool(1)
    queued = []
    try:
        assert pool.first_answer("/livez")[0] == 200
        r = run_cli(["user", "add", "--data", pool.data, "--username", "parker",
                     "--email", "parker@example.org", "--password-stdin",
                     "--confirmed"], input="parker-password\n")
        assert r.returncode == 0, r.stderr
        body = json.dumps({"login": "parker", "password": "parker-password",
                           "device_name": "d", "client_version": "t",
                           "vault_id": "v"}).encode()
        s, _, b = fcgi_client.request(pool.sock, "POST", "/api/client/pair", body,
                                      {"Content-Type": "application/json"})
        assert s == 200, b
        token = json.loads(b)["device_token"]
        (w,) = workers_of(pool.proc.pid)
        push = json.dumps({"ops": [{"op_id": "parked-1", "entity_type": "file",
                                    "entity_id": "p.md", "op_type": "create",
                                    "payload_json": "{}", "client_sequence": 1,
                                    "last_seen_server_seq": 0,
                                    "created_at": "2026-12-06T00:00:00Z"}]}).encode()
        other = json.dumps({"login": "nobody", "password": "not the password",
                            "device_name": "d", "client_version": "t",
                            "vault_id": "v"}).encode()
        other_records = fcgi_client.encode("POST", "/api/client/pair", other,
                                           {"Content-Type": "application/json"},
                                           remote_addr="10.8.0.1")
        # BEGIN_REQUEST and PARAMS now (16-byte records header + params),
        # the body (STDIN records) only later
        head_len = 16
        while other_records[head_len - 8 + 1] != fcgi_client.PARAMS or \
                int.from_bytes(other_records[head_len - 4:head_len - 2], "big") != 0:
            clen = int.from_bytes(other_records[head_len + 4:head_len + 6], "big")
            head_len += 8 + clen + other_records[head_len + 6]
        os.kill(w, signal.SIGSTOP)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(pool.sock)
        c.sendall(fcgi_client.encode("POST", "/api/v1/sync/push", push,
                                     {"Content-Type": "application/json",
                                      "Authorization": "Bearer " + token}))
        queued.append(c)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(pool.sock)
        c.sendall(other_records[:head_len])
        queued.append(c)
        os.kill(w, signal.SIGCONT)
        try:
            status = fcgi_client.read_response(queued[0])[0]
        except socket.timeout:
            raise AssertionError("the push's answer waited for the other request")
        assert status == 200
        queued[1].sendall(other_records[head_len:])
        assert fcgi_client.read_response(queued[1])[0] == 401
    finally:
        for c in queued:
            c.close()
        pool.stop()
    # the push was parked (and then settled): this test tested something
    log = pool.proc.stderr.read().decode(errors="replace")
    m = re.search(r"group commit: (\d+) answers held back", log)
    assert m and int(m.group(1)) >= 1, log[-4000:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_answer(addr):
    """The raw bytes a worker sends back for GET /livez on a unix socket's
    path or a (host, port) address (b"": it closed the connection without
    answering). None while nobody listens yet, or on a timeout."""
    c = socket.socket(socket.AF_INET if isinstance(addr, tuple) else socket.AF_UNIX,
                      socket.SOCK_STREAM)
    c.settimeout(10)
    try:
        c.connect(addr)
    except ConnectionRefusedError:
        c.close()
        return None
    except socket.timeout:
        c.close()
        return None
    try:
        try:
            c.sendall(fcgi_client.encode("GET", "/livez"))
        except (BrokenPipeError, ConnectionResetError):
            return b""  # closed before the request was even sent
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                return out  # closed with the request unread
            except socket.timeout:
                return None
            if not chunk:
                return out
            out += chunk
    finally:
        c.close()


def test_tcp_listener_keeps_fcgi_web_server_addrs():
    """On a TCP socket (spawn-fcgi -p) the worker does what libfcgi's own
    accept did: it serves only the addresses in FCGI_WEB_SERVER_ADDRS and
    closes other connections unanswered."""
    for allowed, served in (("127.0.0.1", True), ("10.1.2.3, 127.0.0.1", True),
                            ("10.1.2.3", False)):
        pool = Pool(1, tcp_port=free_port(), env={"FCGI_WEB_SERVER_ADDRS": allowed})
        try:
            deadline = time.time() + 20
            while time.time() < deadline and not any(
                    "eventpoll" in f for w in workers_of(pool.proc.pid)
                    for f in fds_of(w)):
                time.sleep(0.1)  # the worker has not reached its wait yet
            out = None
            while out is None and time.time() < deadline:
                out = raw_answer(pool.sock)
                if out is None:
                    time.sleep(0.1)
            assert out is not None, "the pool never listened"
            if served:
                # a STDOUT record, then END_REQUEST: an answer
                assert out[1] == fcgi_client.STDOUT and bytes([1, fcgi_client.END_REQUEST]) in out, out[:200]
            else:
                assert out == b"", out[:200]
            assert len(workers_of(pool.proc.pid)) == 1
        finally:
            pool.stop()
        log = pool.proc.stderr.read().decode(errors="replace")
        assert ("refused a FastCGI connection from 127.0.0.1" in log) == (not served), log[-2000:]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def soft_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3]
    raise AssertionError("no open-files limit")


def test_out_of_descriptors_neither_spins_nor_strands_a_connection():
    """accept failing for want of descriptors leaves the connection queued
    and the socket readable, and EPOLLEXCLUSIVE woke only this worker: it
    must neither retry at once (which burnt a core and logged without end)
    nor leave the connection waiting for another one to come. It takes it
    with its spare descriptor and closes it, and serves again once
    descriptors are back."""
    pool = Pool(1)
    try:
        assert pool.first_answer("/livez")[0] == 200
        (w,) = workers_of(pool.proc.pid)
        settled_fds(w)
        used = {int(n) for n in os.listdir(f"/proc/{w}/fd")}
        lowest_free = min(set(range(len(used) + 1)) - used)
        soft = soft_nofile(w)
        subprocess.run(["prlimit", f"--pid={w}", f"--nofile={lowest_free}:"], check=True)
        before = cpu_seconds(w)
        t0 = time.time()
        out = raw_answer(pool.sock)
        took = time.time() - t0
        assert out == b"", out[:200]  # closed unanswered, not left queued
        assert took < 5, f"the connection waited {took:.1f} s"
        time.sleep(1.0)
        spent = cpu_seconds(w) - before
        assert spent < 0.3, f"the worker used {spent:.2f} s of CPU while out of descriptors"
        subprocess.run(["prlimit", f"--pid={w}", f"--nofile={soft}:"], check=True)
        assert fcgi_client.request(pool.sock, "GET", "/livez")[0] == 200
        assert workers_of(pool.proc.pid) == [w]
    finally:
        pool.stop()
    log = pool.proc.stderr.read().decode(errors="replace")
    assert log.count("closing connections until descriptors are back") == 1, log[-2000:]


if __name__ == "__main__":
    run_tests(dict(globals()))
