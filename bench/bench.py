#!/usr/bin/env python3
"""Throughput and latency of the sync routes through nginx, beside a
FastCGI hello-world run in the same pool behind the same generated nginx.

Usage: bench/bench.py [--binary build/bin/verstak-sync-server] [--duration 10]
                      [--connections 1,16,64] [--workers N] [--repeat N]
                      [--only TEXT]
Needs wrk (Debian package wrk). Prints a Markdown table: req/s, ops/s,
p50/p99 latency and the peak RSS of the workers (VmHWM) for each run.
With --repeat N the whole plan runs N times in turn (hello-world, then the
server, each round on fresh stacks), and each cell is the median of the
rounds, req/s with its lowest and highest: on a shared VM one run can be
20 % off the next, and a single figure hides that. "% of hello" is the
median of the per-round ratios, each against the hello-world measured
minutes before it.
This is a measurement, not a test: it asserts nothing.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def build_hello(tmp):
    out = os.path.join(tmp, "fcgi_hello")
    cflags = subprocess.run(["pkg-config", "--cflags", "--libs", "fcgi"],
                            capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-O2", "-o", out, os.path.join(HERE, "fcgi_hello.c")] + cflags,
                   check=True)
    wrapper = os.path.join(tmp, "hello-wrapper.sh")
    with open(wrapper, "w") as f:
        # The stack runs "<wrapper> <binary> --fcgi-worker --data DIR".
        f.write(f"#!/bin/sh\nexec {out}\n")
    os.chmod(wrapper, 0o755)
    return wrapper


def parse_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def wrk(url, conns, duration, script=None, env=None):
    threads = min(conns, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
           "--latency", "--timeout", "30s"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(url)
    e = dict(os.environ)
    e.update(env or {})
    out = subprocess.run(cmd, capture_output=True, text=True, env=e).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": parse_ms(lat["50"]), "p99": parse_ms(lat["99"]),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_err.group(1) if socket_err else ""}


def worker_hwm_kib(stack):
    peak = 0
    for pid in stack.worker_pids():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def stored_ops(stack):
    import sqlite3
    db = sqlite3.connect(os.path.join(stack.data, "server.db"), timeout=30)
    try:
        return db.execute("SELECT count(*) FROM server_ops").fetchone()[0]
    finally:
        db.close()


def settled_ops(stack):
    """stored_ops once the count stops moving: requests that wrk left
    queued in nginx when the previous run ended are still being stored,
    and would be counted to the next run."""
    last = stored_ops(stack)
    while True:
        time.sleep(0.5)
        now = stored_ops(stack)
        if now == last:
            return now
        last = now


def seed(stack, n_ops):
    r = harness.run_cli(["user", "add", "--data", stack.data, "--username", "bench",
                         "--email", "bench@example.org", "--password-stdin",
                         "--confirmed"], input="bench-password\n")
    assert r.returncode == 0, r.stderr
    r = stack.post("/api/client/pair", {"login": "bench", "password": "bench-password",
                                        "device_name": "bench", "client_version": "b",
                                        "vault_id": "bench-vault"})
    token = r.json()["device_token"]
    # Ops for the pull page: small desktop notes, ~650 bytes of JSON each,
    # so a 100-op page is the ~65 KiB the issue measures.
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 5 + "Sed do eiusmod."
    for start in range(0, n_ops, 100):
        ops = [{"op_id": f"seed-{i}", "entity_type": "file",
                "entity_id": f"Notes/seed-{i}.md", "op_type": "create",
                "payload_json": json.dumps({"path": f"Notes/seed-{i}.md",
                                            "contentHash": "%064x" % i,
                                            "content": text}),
                "client_sequence": i, "last_seen_server_seq": 0,
                "created_at": "2026-11-25T00:00:00Z"}
               for i in range(start, min(n_ops, start + 100))]
        r = stack.post("/api/v1/sync/push", {"ops": ops},
                       headers={"Authorization": "Bearer " + token})
        assert r.status == 200, r
    r = stack.post("/api/v1/sync/pull", {"since_sequence": 0},
                   headers={"Authorization": "Bearer " + token})
    page = r.json()
    return token, page["server_sequence"], len(r.body)


def one_round(args, workers, conns, hello):
    """Runs the plan once; returns [(name, conns, wrk result, ops, hwm)]."""
    rows = []
    hs = harness.Stack(workers=workers, env={"VERSTAK_WORKER_WRAPPER": hello})
    hs.start()
    try:
        base = f"http://127.0.0.1:{hs.port}"
        for c in conns:
            r = wrk(base + "/hello", c, args.duration)
            rows.append(("FastCGI hello-world", c, r, 1, worker_hwm_kib(hs)))
    finally:
        hs.cleanup()

    s = harness.Stack(workers=workers)
    s.start()
    try:
        token, cursor, page_bytes = seed(s, 100)
        base = f"http://127.0.0.1:{s.port}"
        env = {"VS_TOKEN": token}
        plan = [("health", "/api/v1/health", "health.lua", {}, 1),
                (f"pull 100-op page ({page_bytes // 1024} KiB)", "/api/v1/sync/pull",
                 "pull.lua", {}, 100),
                ("push 100-op batches", "/api/v1/sync/push", "push.lua",
                 {"VS_OPS": "100", "VS_CURSOR": str(cursor)}, 100),
                ("push single op", "/api/v1/sync/push", "push.lua",
                 {"VS_OPS": "1", "VS_CURSOR": str(cursor)}, 1)]
        for name, path, script, extra, ops in plan:
            if args.only and args.only not in name:
                continue
            for c in conns:
                e = dict(env)
                e.update(extra)
                before = settled_ops(s)
                r = wrk(base + path, c, args.duration, script, e)
                if path.endswith("/push"):
                    # Acknowledged is not enough: count what was stored.
                    r["stored_per_s"] = (stored_ops(s) - before) / args.duration
                rows.append((name, c, r, ops, worker_hwm_kib(s)))
    finally:
        s.cleanup()
    return rows


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "bin",
                                                     "verstak-sync-server"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--only", default="")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    harness.BINARY = os.path.abspath(args.binary)
    conns = [int(c) for c in args.connections.split(",")]
    workers = args.workers or 2 * os.cpu_count()  # the stack's default
    tmp = tempfile.mkdtemp(prefix="vs-bench-")
    rounds = []
    try:
        hello = build_hello(tmp)
        for i in range(max(1, args.repeat)):
            rounds.append(one_round(args, workers, conns, hello))
            if args.repeat > 1:
                print(f"round {i + 1} of {args.repeat} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Cells of one (scenario, conns) across rounds, in the first round's order.
    keys = [(n, c) for n, c, _, _, _ in rounds[0]]
    cell = {k: [] for k in keys}
    for rows in rounds:
        hello_rps = {c: r["rps"] for n, c, r, _, _ in rows if n.startswith("FastCGI")}
        for name, c, r, ops, hwm in rows:
            ratio = 100.0 * r["rps"] / hello_rps[c] if hello_rps.get(c) else 0
            cell[(name, c)].append((r, ops, hwm, ratio))

    n = len(rounds)
    print(f"\n{workers} workers, {os.cpu_count()} cores, {args.duration} s per run"
          + (f", median of {n} rounds (req/s: lowest-highest)" if n > 1 else "") + "\n")
    print("| scenario | conns | req/s | ops/s | ops stored/s | % of hello | p50 ms | p99 ms | non-2xx | peak worker RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in keys:
        cs = cell[(name, c)]
        ops = cs[0][1]
        rps = median([r["rps"] for r, _, _, _ in cs])
        rps_txt = f"{rps:.0f}"
        if n > 1:
            rps_txt += f" ({min(r['rps'] for r, _, _, _ in cs):.0f}-{max(r['rps'] for r, _, _, _ in cs):.0f})"
        stored = ""
        if "stored_per_s" in cs[0][0]:
            stored = f"{median([r['stored_per_s'] for r, _, _, _ in cs]):.0f}"
        pct = median([x for _, _, _, x in cs])
        p50 = median([r["p50"] for r, _, _, _ in cs])
        p99 = median([r["p99"] for r, _, _, _ in cs])
        non2xx = sum(r["non2xx"] for r, _, _, _ in cs)
        hwm = max(h for _, _, h, _ in cs)
        print(f"| {name} | {c} | {rps_txt} | {rps * ops:.0f} | {stored} | {pct:.0f}% | "
              f"{p50:.2f} | {p99:.2f} | {non2xx} | {hwm / 1024:.1f} |")


if __name__ == "__main__":
    main()
