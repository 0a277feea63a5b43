#!/usr/bin/env python3
"""Quota benchmark: pushes while a user with many blob references uploads.

Usage: bench/quota.py [--binary build/bin/verstak-sync-server] [--duration 8]
                      [--references 100000] [--uploaders 4] [--rounds 2]

A blob upload checks the vault and user quotas, which sum the bytes of
every reference the user has. This starts the local stack (4 workers, 8
upload workers) with a fresh data directory, gives the benchmark user
--references blob references (rows written straight into
server_blob_refs, 1 byte each, so no quota is reached), then, at the same
time for --duration seconds:
  - --uploaders connections upload unique 1 MiB blobs as that user
    (upload_client.c), and
  - wrk sends single-op pushes of the same user over 16 connections.
It prints the pushes' rate and latency beside the uploads' and, for
scale, the pushes alone with no upload running. A measurement, not a test.
Needs wrk and a C compiler.
"""
import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402
from bench import seed, wrk  # noqa: E402
from blobs import build_upload_client, upload_run  # noqa: E402


def add_references(data_dir, n):
    """n references of 1 byte for the benchmark device's scope."""
    db = sqlite3.connect(os.path.join(data_dir, "server.db"), timeout=30)
    try:
        user, vault = db.execute(
            "SELECT user_id, vault_id FROM server_devices LIMIT 1").fetchone()
        rows = ((user, vault, "%064x" % random.getrandbits(256), 1,
                 "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
                for _ in range(n))
        db.executemany("INSERT INTO server_blob_refs (user_id, vault_id, sha256,"
                       " size, created_at, last_accessed) VALUES (?,?,?,?,?,?)",
                       rows)
        db.commit()
    finally:
        db.close()


def one_round(args, client):
    s = harness.Stack(workers=4, upload_workers=8)
    s.start()
    try:
        token, cursor, _ = seed(s, 100)
        add_references(s.data, args.references)
        url = f"http://127.0.0.1:{s.port}/api/v1/sync/push"
        env = {"VS_TOKEN": token, "VS_OPS": "1", "VS_CURSOR": str(cursor)}
        alone = wrk(url, 16, args.duration, "push.lua", env)
        up = {}
        t = threading.Thread(target=lambda: up.update(
            upload_run(client, s, token, args.uploaders, args.duration)))
        t.start()
        both = wrk(url, 16, args.duration, "push.lua", env)
        t.join()
        return alone, both, up
    finally:
        s.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "bin",
                                                     "verstak-sync-server"))
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--references", type=int, default=100000)
    ap.add_argument("--uploaders", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    harness.BINARY = os.path.abspath(args.binary)
    tmp = tempfile.mkdtemp(prefix="vs-quota-")
    try:
        client = build_upload_client(tmp)
        print(f"\n{args.references} references, {args.uploaders} uploaders,"
              f" 16 push connections, {args.duration} s per run\n")
        print("| round | pushes alone req/s | p99 ms | pushes beside uploads req/s"
              " | p50 ms | p99 ms | uploads/s | upload p50 ms | non-2xx |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for i in range(args.rounds):
            alone, both, up = one_round(args, client)
            bad = alone["non2xx"] + both["non2xx"] + up["non2xx"]
            print(f"| {i + 1} | {alone['rps']:.0f} | {alone['p99']:.2f} |"
                  f" {both['rps']:.0f} | {both['p50']:.2f} | {both['p99']:.2f} |"
                  f" {up['rps']:.1f} | {up['p50']:.2f} | {bad} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
