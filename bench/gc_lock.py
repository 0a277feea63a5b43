#!/usr/bin/env python3
"""Garbage-collection benchmark: pushes while the collector runs.

Usage: bench/gc_lock.py [--binary build/bin/verstak-sync-server]
                        [--blobs 100000] [--files 20000] [--duration 8]

Starts the local stack (4 workers) with a fresh data directory and gives
the benchmark user --blobs blobs, each with a server_blobs row and a
reference (written straight into the database), and a file under blobs/
for the first --files of them. Every blob is in use, so the collector
removes nothing: what it costs is the checking. For --duration seconds
wrk sends single-op pushes over 16 connections while
`verstak-sync-server gc` runs again and again; the pushes' rate and
latency are printed beside the same pushes without the collector.
A measurement, not a test. Needs wrk.
"""
import argparse
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402
from bench import seed, wrk  # noqa: E402

TS = "2026-01-01T00:00:00Z"


def add_blobs(data_dir, n, files):
    db = sqlite3.connect(os.path.join(data_dir, "server.db"), timeout=30)
    try:
        user, vault = db.execute(
            "SELECT user_id, vault_id FROM server_devices LIMIT 1").fetchone()
        shas = ["%064x" % random.getrandbits(256) for _ in range(n)]
        db.executemany("INSERT INTO server_blobs (sha256, size, created_at)"
                       " VALUES (?, 1, ?)", ((s, TS) for s in shas))
        db.executemany("INSERT INTO server_blob_refs (user_id, vault_id, sha256,"
                       " size, created_at, last_accessed) VALUES (?,?,?,1,?,?)",
                       ((user, vault, s, TS, TS) for s in shas))
        db.commit()
    finally:
        db.close()
    old = time.time() - 30 * 86400
    for s in shas[:files]:
        d = os.path.join(data_dir, "blobs", s[:2], s[2:4])
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, s)
        with open(p, "wb") as f:
            f.write(b"x")
        os.utime(p, (old, old))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "bin",
                                                     "verstak-sync-server"))
    ap.add_argument("--blobs", type=int, default=100000)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args()
    harness.BINARY = os.path.abspath(args.binary)
    s = harness.Stack(workers=4)
    s.start()
    try:
        token, cursor, _ = seed(s, 100)
        add_blobs(s.data, args.blobs, args.files)
        url = f"http://127.0.0.1:{s.port}/api/v1/sync/push"
        env = {"VS_TOKEN": token, "VS_OPS": "1", "VS_CURSOR": str(cursor)}
        alone = wrk(url, 16, args.duration, "push.lua", env)
        stop = threading.Event()
        runs = []

        def collect():
            while not stop.is_set():
                t = time.monotonic()
                r = subprocess.run([harness.BINARY, "gc", "--data", s.data],
                                   capture_output=True, text=True)
                assert r.returncode == 0, r.stderr
                runs.append(time.monotonic() - t)

        t = threading.Thread(target=collect)
        t.start()
        both = wrk(url, 16, args.duration, "push.lua", env)
        stop.set()
        t.join()
        print(f"\n{args.blobs} blobs and references, {args.files} files,"
              f" 16 push connections, {args.duration} s per run\n")
        print("| pushes | req/s | p50 ms | p99 ms | non-2xx | gc runs | s per gc run |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r, n in (("alone", alone, ""), ("beside gc", both, len(runs))):
            per = f"{sum(runs) / len(runs):.2f}" if n else ""
            print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |"
                  f" {r['non2xx']} | {n} | {per} |")
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
