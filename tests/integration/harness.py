"""Integration-test harness: starts the real local stack (the built
verstak-sync-server with its private nginx and worker pool) on a free
loopback port with a temporary data directory, talks HTTP to it, and
checks that stopping it leaves no process behind.

Standard library only, so a fresh Debian 12 with python3 can run it.
"""
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BINARY = os.environ.get("VS_BINARY", "verstak-sync-server")
SRCDIR = os.environ.get("VS_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(SRCDIR, "tests", "fixtures", "go-datadir-v2")
SANITIZED = os.environ.get("VS_SANITIZED") == "1"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text):
    """PIDs of live processes whose command line contains text."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(int(pid))
    return found


def describe_processes(pids):
    """pid, parent, state, name and command line of each, for a failing
    assertion's message."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            out.append(f"{pid}: gone")
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat.rsplit(")", 1)[1].split()
        out.append(f"{pid}: ppid {rest[1]} pgid {rest[2]} state {rest[0]}"
                   f" comm {name!r} cmd {cmd.strip()!r}")
    return "; ".join(out)


def children_of(ppid):
    kids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) == ppid and rest[0] != "Z":
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                kids.append((int(pid), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def remove_writer_queue(db_path):
    """Removes the shared-memory writer queue and commit table of a test
    database (src/writelock.c and src/combine.c name them after the
    file's device and inode); a server keeps its objects for good, a test
    suite would pile up hundreds in /dev/shm."""
    try:
        st = os.stat(db_path)
    except OSError:
        return
    tail = f"-{st.st_dev:x}-{st.st_ino:x}-{os.getuid()}"
    for name in (glob.glob(f"/dev/shm/verstak-wlock4{tail}") +
                 glob.glob(f"/dev/shm/verstak-combine2-*{tail}")):
        try:
            os.unlink(name)
        except OSError:
            pass


def copy_fixture(dest):
    """Copies the Go server's data directory to dest (writable)."""
    shutil.copytree(os.path.join(FIXTURE, "data"), dest)
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o750)
        for f in files:
            os.chmod(os.path.join(root, f), 0o640)
    return dest


def load_manifest():
    with open(os.path.join(FIXTURE, "manifest.json")) as f:
        return json.load(f)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name-lowercase, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def headers_named(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Stack:
    """One running local stack."""

    def __init__(self, data_dir=None, workers=2, args=(), env=None, port=None,
                 upload_workers=2):
        self.tmp = tempfile.mkdtemp(prefix="vs-it-")
        self.data = data_dir or os.path.join(self.tmp, "data")
        self.port = port or free_port()
        self.workers = workers
        self.upload_workers = upload_workers
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.out_lines = []

    def command(self):
        return [BINARY, "--data", self.data, "--listen",
                f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                "--upload-workers", str(self.upload_workers)] + self.args

    def start(self, timeout=30):
        self.log = open(os.path.join(self.tmp, "stack.log"), "w+")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=self.log, env=self.env, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.out_lines.append(line)
            if "listening on" in line:
                self.wait_ready(deadline)
                return self
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("stack did not start: " + self.stderr())

    def wait_ready(self, deadline):
        """nginx listens before every worker has opened the database;
        wait until a health request is answered by a worker."""
        while time.time() < deadline:
            try:
                r = self.request("GET", "/livez")
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("no worker answered: " + self.stderr())

    def stderr(self):
        try:
            self.log.flush()
            with open(self.log.name) as f:
                return f.read()[-4000:]
        except (OSError, AttributeError):
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def worker_pids(self):
        """The worker pool (every route but uploads)."""
        return sorted(pid for pid, cmd in children_of(self.proc.pid)
                      if "--fcgi-worker" in cmd and "--upload-pool" not in cmd)

    def upload_pids(self):
        """The upload pool (POST /api/v1/blobs/)."""
        return sorted(pid for pid, cmd in children_of(self.proc.pid)
                      if "--fcgi-worker" in cmd and "--upload-pool" in cmd)

    def nginx_pids(self):
        return sorted(pid for pid, cmd in children_of(self.proc.pid)
                      if "nginx" in cmd)

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("stack did not stop within %ds" % timeout)
        self.proc.stdout.close()
        self.log.close()
        return rc

    def leftovers(self):
        """Processes still running that belong to this stack."""
        deadline = time.time() + 5
        while True:
            left = processes_mentioning(self.data)
            if not left or time.time() > deadline:
                return left
            time.sleep(0.1)

    def cleanup(self):
        try:
            self.stop()
        finally:
            for pid in processes_mentioning(self.data):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            remove_writer_queue(os.path.join(self.data, "server.db"))
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def run_cli(args, input=None, env=None, timeout=60):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BINARY] + list(args), input=input, env=e,
                          capture_output=True, text=True, timeout=timeout)


def run_tests(namespace):
    """Runs every test_* function of a module; prints one line per test
    and the RESULT line the test script counts."""
    tests = [(n, f) for n, f in namespace.items()
             if n.startswith("test_") and callable(f)]
    only = os.environ.get("VS_TEST_ONLY")
    if only:
        tests = [(n, f) for n, f in tests if only in n]
    failures = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:  # report and go on to the next test
            failures += 1
            print(f"FAIL {name} ({time.time() - t0:.1f}s)", flush=True)
            traceback.print_exc(file=sys.stdout)
    print(f"RESULT tests={len(tests)} failures={failures}", flush=True)
    sys.exit(1 if failures else 0)
