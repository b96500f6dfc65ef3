"""Mail & processes: what the auditor adds to an SMTP session and to a process spawn.

    .venv/bin/python bench/bench_mail_processes.py --rounds 7 --sessions 100 --spawns 100

The SMTP server (aiosmtpd) runs in another process.  In each round the same loop runs without
and with the auditor (install / uninstall, order alternating), so the two are measured side by
side; the table shows medians over rounds of the per-operation wall time and of the calling
thread's CPU time (``time.thread_time_ns``, far less noisy than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import subprocess
import sys
import time

SERVER = r'''
import asyncio, socket, sys, time
from aiosmtpd.controller import Controller
class H:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
with socket.create_server(("127.0.0.1", 0)) as probe:
    port = probe.getsockname()[1]
c = Controller(H(), hostname="127.0.0.1", port=port)
c.start()
print(port, flush=True)
sys.stdin.read()
c.stop()
'''

MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26


def smtp_session(port: int) -> None:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo()
    s.sendmail("a@example.net", ["b@example.org"], MESSAGE)
    s.quit()


def spawn() -> None:
    subprocess.run(["true"], check=True)


def measure(fn, n: int) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - wall0) / n / 1000, (time.thread_time_ns() - cpu0) / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--spawns", type=int, default=100)
    args = parser.parse_args()

    import mit_network_audit as mna

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    benches = {
        "SMTP session (EHLO, MAIL, RCPT, DATA 2 kB, QUIT), aiosmtpd in another process": (
            lambda: smtp_session(port), args.sessions),
        "subprocess.run(['true'])": (spawn, args.spawns),
    }
    results: dict = {(name, cfg): ([], []) for name in benches for cfg in ("none", "ours")}
    sink = mna.MemorySink()
    try:
        for fn, n in benches.values():
            measure(fn, max(5, n // 10))  # warm-up
        for r in range(args.rounds):
            for cfg in (("none", "ours") if r % 2 == 0 else ("ours", "none")):
                if cfg == "ours":
                    mna.install(sink=sink)
                for name, (fn, n) in benches.items():
                    wall, cpu = measure(fn, n)
                    results[(name, cfg)][0].append(wall)
                    results[(name, cfg)][1].append(cpu)
                if cfg == "ours":
                    mna.uninstall()
                    sink.clear()
    finally:
        server.stdin.close()
        server.wait(10)
    print("| benchmark | configuration | wall median (µs) | caller CPU per op (µs) | added CPU vs none (µs) |")
    print("|---|---|---:|---:|---:|")
    for name in benches:
        base = statistics.median(results[(name, "none")][1])
        for cfg in ("none", "ours"):
            wall = statistics.median(results[(name, cfg)][0])
            cpu = statistics.median(results[(name, cfg)][1])
            added = "—" if cfg == "none" else f"{cpu - base:+.1f}"
            print(f"| {name} | {cfg} | {wall:.1f} | {cpu:.1f} | {added} |")


if __name__ == "__main__":
    main()
