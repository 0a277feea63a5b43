#!/usr/bin/env python3
"""Blob benchmark: downloads, uploads, one large upload, worker memory.

Usage: bench/blobs.py [--binary build/bin/verstak-sync-server] [--duration 10]
                      [--rounds 3] [--connections 16] [--workers N]

Runs the local stack (nginx + worker pool) with a fresh data directory and
measures, all in the same run:
  1. GET of a 1 MiB blob (auth, scope and size checks, then nginx sends the
     file via X-Accel-Redirect) against nginx serving the same file as a
     plain static file from the stack's /static/ location; the two
     alternate for --rounds rounds and the medians are compared;
  2. POST of 1 MiB uploads, every one with unique content (upload_client.c:
     one random body sent with writev behind a per-request unique prefix;
     wrk's Lua has to build each 1 MiB body as a new string and used more
     CPU than the server), through the whole path: multipart
     parsing, SHA-256, temp file, fsync, rename, directory fsync, commit;
     beside it, what the file system alone allows for the same file work
     (write 1 MiB, fsync, mkdir, rename, directory fsyncs) in as many
     processes as there are upload workers;
  3. one 64 MiB upload (curl) against `sha256sum` of the same file;
  4. the upload workers' peak RSS (VmHWM) before and after a 256 MiB upload.
Needs wrk, curl and a C compiler. Prints Markdown tables. A measurement, not a test.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402
from bench import wrk  # noqa: E402

MIB = 1024 * 1024

DOWNLOAD_LUA = r"""
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VS_TOKEN")
"""


def build_upload_client(tmp):
    out = os.path.join(tmp, "upload_client")
    subprocess.run(["cc", "-O2", "-pthread", "-o", out,
                    os.path.join(HERE, "upload_client.c")], check=True)
    return out


def upload_run(client, stack, token, conns, seconds):
    out = subprocess.run([client, "127.0.0.1", str(stack.port), token, str(conns),
                          str(seconds), str(MIB)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return {"rps": r["rps"], "p50": r["p50_ms"], "p99": r["p99_ms"],
            "non2xx": r["non2xx"] + r["errors"]}


def seed(stack):
    r = harness.run_cli(["user", "add", "--data", stack.data, "--username", "bench",
                         "--email", "bench@example.org", "--password-stdin",
                         "--confirmed"], input="bench-password\n")
    assert r.returncode == 0, r.stderr
    r = stack.post("/api/client/pair", {"login": "bench", "password": "bench-password",
                                        "device_name": "bench", "client_version": "b",
                                        "vault_id": "bench-vault"})
    assert r.status == 200, r
    return r.json()["device_token"]


def curl_upload(stack, token, path):
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-H", "Authorization: Bearer " + token,
                          "-F", f"file=@{path};filename=blob.bin",
                          f"http://127.0.0.1:{stack.port}/api/v1/blobs/"],
                         capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - t0
    assert '"sha256"' in out, out
    return elapsed


def sha256sum_time(path, rounds=3):
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", path], capture_output=True, check=True)
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    return best


def fs_only_worker(args):
    """The file work of one upload, in a loop, with nothing else."""
    base, seconds = args
    buf = os.urandom(MIB)
    n, end = 0, time.time() + seconds

    def fsync_dir(p):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    while time.time() < end:
        h = os.urandom(32).hex()
        tmp = os.path.join(base, ".upload-" + h)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, buf)
        os.fsync(fd)
        os.close(fd)
        d1 = os.path.join(base, h[:2])
        d2 = os.path.join(d1, h[2:4])
        for d, parent in ((d1, base), (d2, d1)):
            try:
                os.mkdir(d, 0o750)
                fsync_dir(parent)
            except FileExistsError:
                pass
        os.rename(tmp, os.path.join(d2, h))
        fsync_dir(d2)
        n += 1
    return n


def fs_only_rate(base, procs, seconds):
    os.makedirs(base)
    with multiprocessing.Pool(procs) as p:
        total = sum(p.map(fs_only_worker, [(base, seconds)] * procs))
    shutil.rmtree(base, ignore_errors=True)
    return total / seconds


def random_file(path, size):
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "bin",
                                                     "verstak-sync-server"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--upload-workers", type=int, default=0)
    args = ap.parse_args()
    harness.BINARY = os.path.abspath(args.binary)
    workers = args.workers or 2 * os.cpu_count()  # the stack's defaults
    upload_workers = args.upload_workers or 4 * os.cpu_count()
    c = args.connections
    tmp = tempfile.mkdtemp(prefix="vs-bench-blobs-")
    rows = []
    try:
        # The stack's static directory gets a copy of the 1 MiB blob, so
        # the same nginx serves it both ways in the same run.
        static = os.path.join(tmp, "static")
        shutil.copytree(os.path.join(harness.SRCDIR, "static"), static)
        blob_file = os.path.join(tmp, "blob-1m.bin")
        random_file(blob_file, MIB)
        shutil.copy(blob_file, os.path.join(static, "blob-1m.bin"))
        client = build_upload_client(tmp)
        download_lua = os.path.join(tmp, "download.lua")
        with open(download_lua, "w") as f:
            f.write(DOWNLOAD_LUA)

        s = harness.Stack(workers=workers, upload_workers=upload_workers,
                          env={"VERSTAK_STATIC_DIR": static})
        s.start()
        token = seed(s)
        base = f"http://127.0.0.1:{s.port}"
        curl_upload(s, token, blob_file)
        with open(blob_file, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        env = {"VS_TOKEN": token, "VS_SIZE": str(MIB)}

        statics, blobs = [], []
        for _ in range(args.rounds):
            statics.append(wrk(base + "/static/blob-1m.bin", c, args.duration))
            blobs.append(wrk(base + "/api/v1/blobs/" + sha, c, args.duration,
                             download_lua, env))
        static_r = median_run(statics)
        blob_r = median_run(blobs)
        rows.append((f"GET 1 MiB, nginx static file (median of {args.rounds})",
                     c, static_r, ""))
        rows.append((f"GET 1 MiB blob, X-Accel-Redirect (median of {args.rounds})",
                     c, blob_r,
                     f"{100 * blob_r['rps'] / static_r['rps']:.0f}% of static"))
        up_r = upload_run(client, s, token, c, args.duration)
        rows.append(("POST 1 MiB unique uploads", c, up_r,
                     f"{up_r['rps']:.0f} MiB/s"))
        fs_rate = fs_only_rate(os.path.join(os.path.dirname(s.data), "fs-only"),
                               upload_workers, min(args.duration, 5))

        big = os.path.join(tmp, "blob-64m.bin")
        random_file(big, 64 * MIB)
        t_sum = sha256sum_time(big)
        t_up = min(curl_upload(s, token, big) for _ in range(1))
        # a second, different 64 MiB file: a re-upload would be dedup
        random_file(big, 64 * MIB)
        t_up = min(t_up, curl_upload(s, token, big))
        os.unlink(big)

        huge = os.path.join(tmp, "blob-256m.bin")
        random_file(huge, 256 * MIB)
        hwm_before = {pid: worker_hwm_kib_pid(pid) for pid in s.upload_pids()}
        t_huge = curl_upload(s, token, huge)
        growth = max(worker_hwm_kib_pid(pid) - kib for pid, kib in hwm_before.items())
        os.unlink(huge)
        peak = max(worker_hwm_kib_pid(pid) for pid in s.upload_pids())
        s.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{workers} workers, {upload_workers} upload workers, {os.cpu_count()} cores, "
          f"{args.duration} s per wrk run\n")
    print("| scenario | conns | req/s | p50 ms | p99 ms | non-2xx | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, conns, r, note in rows:
        print(f"| {name} | {conns} | {r['rps']:.0f} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['non2xx']} | {note} |")
    print(f"| (file system alone, {upload_workers} processes: write 1 MiB, fsync, "
          f"mkdir, rename, dir fsyncs) | | {fs_rate:.0f} | | | | files/s |")
    print()
    print("| single transfer | time s | MiB/s | note |")
    print("|---|---:|---:|---|")
    print(f"| sha256sum 64 MiB (best of 3) | {t_sum:.3f} | {64 / t_sum:.0f} | |")
    print(f"| upload 64 MiB (curl, best of 2) | {t_up:.3f} | {64 / t_up:.0f} | "
          f"{100 * t_sum / t_up:.0f}% of sha256sum speed |")
    print(f"| upload 256 MiB (curl) | {t_huge:.3f} | {256 / t_huge:.0f} | "
          f"worker VmHWM growth {growth} KiB, peak {peak / 1024:.1f} MiB |")


def median_run(runs):
    """The wrk run with the median request rate."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def worker_hwm_kib_pid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
