#!/usr/bin/env python3
"""The attacks of tests/attack.rs, against any server on loopback (standard library only).

  attack.py ATTACK --port P --pids A,B [--path /1k.html]    run one attack, print JSON
  attack.py probe --port P --count N --gap S --path PATH     the normal client (a process
                                                             of its own, so that the
                                                             attacker's loop does not
                                                             delay it); prints JSON

ATTACK is one of:
  flood      20,000 connections that never send a byte (the server's limit should be 5,000),
             while the normal client does 200 GETs, each on a new connection
  bodies     200 clients trickle a POST body (Content-Length 1,000,000, 100 bytes per 100 ms)
             to a static file: when is it answered, when is it closed
  slowloris  1,000 connections send a request head one byte per 500 ms (connections cut are
             replaced) for as long as the normal client runs
  headers    200 clients send 64 KiB header sections: what status, how fast closed, RSS

Every loop is bounded in count and time (no attack runs over a minute); only 127.0.0.1.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def tree(pids):
    """The given processes and their children (nginx's worker)."""
    out = list(pids)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(1, min(len(v), int(-(-p * len(v) // 100))))
    return v[k - 1]


def timed_get(port, path, timeout=5.0):
    """One GET on a new connection (Connection: close): seconds, or an error string."""
    start = time.monotonic()
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if not got.startswith(b"HTTP/1.1 200"):
        return f"answer {got[:40]!r}"
    return time.monotonic() - start


def probe(port, count, gap, path):
    times, failures = [], []
    for _ in range(count):
        r = timed_get(port, path)
        if isinstance(r, float):
            times.append(r)
        else:
            failures.append(r)
        time.sleep(gap)
    return {
        "gets": count,
        "ok": len(times),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "p50_ms": round(1000 * percentile(times, 50), 2) if times else None,
        "p99_ms": round(1000 * percentile(times, 99), 2) if times else None,
        "max_ms": round(1000 * max(times), 2) if times else None,
    }


class Prober:
    """The normal client, as a process of its own."""

    def __init__(self, port, count, gap, path):
        self.p = subprocess.Popen(
            [sys.executable, __file__, "probe", "--port", str(port), "--count", str(count),
             "--gap", str(gap), "--path", path],
            stdout=subprocess.PIPE, text=True)

    def running(self):
        return self.p.poll() is None

    def result(self):
        out, _ = self.p.communicate(timeout=120)
        return json.loads(out)


def peek_open(s):
    """True while the server keeps a connection that has sent nothing (no EOF, no reset)."""
    try:
        return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def flood(port, pids, path, count=20_000, probes=200):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Past `room` sockets, those the server has closed are let go (as a real attacker
    # would), so that 20,000 connections fit under a descriptor limit of 20,000.
    room = max(1000, min(15_000, soft - 500))
    held, failed, opened = [], 0, 0
    prober = None
    rss_before = rss_kib(tree(pids))
    start = time.monotonic()
    deadline = start + 50
    while opened < count and time.monotonic() < deadline:
        try:
            s = socket.create_connection((HOST, port), timeout=2)
            # Non-blocking from now on, so that a peek never waits.
            s.setblocking(False)
            held.append(s)
        except OSError:
            failed += 1
        opened += 1
        if opened == 5000:
            prober = Prober(port, probes, 0.02, path)
        if len(held) >= room:
            keep = []
            for s in held:
                if peek_open(s):
                    keep.append(s)
                else:
                    s.close()
            held = keep
            if len(held) >= room:
                break
    flood_s = time.monotonic() - start
    if prober is None:
        prober = Prober(port, probes, 0.02, path)
    result = prober.result()
    alive = sum(1 for s in held if peek_open(s))
    rss = rss_kib(tree(pids))
    for s in held:
        s.close()
    result.update({
        "opened": opened, "connect_failed": failed, "seconds": round(flood_s, 1),
        "still_open": alive, "rss_before_kib": rss_before, "rss_kib": rss,
        "bytes_per_held": round(1024 * rss / alive) if alive else None,
        "bytes_per_held_above_idle": round(1024 * (rss - rss_before) / alive) if alive else None,
    })
    return result


class Raw:
    """A non-blocking attacking connection."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=5)
        self.s.setblocking(False)
        self.got = b""
        self.started = time.monotonic()
        self.answered = None
        self.closed = None

    def send(self, data):
        if self.closed is not None:
            return 0
        try:
            return self.s.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.closed = time.monotonic()
            return 0

    def poll(self):
        while self.closed is None:
            try:
                b = self.s.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self.closed = time.monotonic()
                return
            if not b:
                self.closed = time.monotonic()
                return
            self.got += b
            if self.answered is None and b"\r\n\r\n" in self.got:
                self.answered = time.monotonic()

    def status(self):
        try:
            return int(self.got[9:12])
        except ValueError:
            return None


def statuses(clients):
    out = {}
    for c in clients:
        k = str(c.status())
        out[k] = out.get(k, 0) + 1
    return out


def bodies(port, pids, path, count=200):
    prober = Prober(port, 200, 0.025, path)
    clients = [Raw(port) for _ in range(count)]
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode()
    sent = time.monotonic()
    for c in clients:
        c.send(head)
    deadline = sent + 20
    while time.monotonic() < deadline and any(c.closed is None for c in clients):
        for c in clients:
            c.send(b"x" * 100)
            c.poll()
        time.sleep(0.1)
    answered = [c.answered - sent for c in clients if c.answered]
    closed = [c.closed - c.answered for c in clients if c.closed and c.answered]
    result = prober.result()
    result.update({
        "clients": count, "statuses": statuses(clients),
        "answer_max_ms": round(1000 * max(answered)) if answered else None,
        "closed": sum(1 for c in clients if c.closed is not None),
        "close_after_answer_max_s": round(max(closed), 2) if closed else None,
        "open_after_20s": sum(1 for c in clients if c.closed is None),
    })
    for c in clients:
        c.s.close()
    return result


def slowloris(port, pids, path, count=1000):
    prober = Prober(port, 200, 0.03, path)
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a" * 64
    head = head.encode()
    clients = [[Raw(port), 0] for _ in range(count)]
    start = time.monotonic()
    cut, cut_408, cut_times = 0, 0, []
    while prober.running() and time.monotonic() - start < 40:
        for pair in clients:
            c, n = pair
            c.poll()
            if c.closed is not None:
                cut += 1
                cut_408 += c.status() == 408
                cut_times.append(c.closed - c.started)
                c.s.close()
                try:
                    pair[0], pair[1] = Raw(port), 0
                except OSError:
                    pass
                continue
            if time.monotonic() - c.started >= 0.5 * n:
                c.send(head[n % len(head):n % len(head) + 1])
                pair[1] = n + 1
        time.sleep(0.02)
    seconds = time.monotonic() - start
    open_now = sum(1 for c, _ in clients if c.closed is None)
    for c, _ in clients:
        c.s.close()
    result = prober.result()
    result.update({
        "connections": count, "seconds": round(seconds, 1), "cut": cut, "cut_with_408": cut_408,
        "cut_after_max_s": round(max(cut_times), 2) if cut_times else None,
        "cut_after_p50_s": round(percentile(cut_times, 50), 2) if cut_times else None,
        "open_at_end": open_now,
    })
    return result


def headers(port, pids, path, count=200):
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
    i = 0
    while len(head) < 64 * 1024:
        head += f"X-Pad-{i:05}: {'p' * 1000}\r\n".encode()
        i += 1
    head += b"\r\n"
    ps = tree(pids)
    rss_before = rss_kib(ps)
    clients = [Raw(port) for _ in range(count)]
    offsets = [0] * count
    start = time.monotonic()
    peak = rss_before
    while time.monotonic() - start < 20 and any(c.closed is None for c in clients):
        for k, c in enumerate(clients):
            if offsets[k] < len(head) and c.closed is None:
                offsets[k] += c.send(head[offsets[k]:])
            c.poll()
        peak = max(peak, rss_kib(ps))
        time.sleep(0.01)
    closed = [c.closed - start for c in clients if c.closed]
    result = {
        "clients": count, "head_kib": len(head) // 1024, "statuses": statuses(clients),
        "closed": len(closed), "closed_within_s": round(max(closed), 2) if closed else None,
        "rss_before_kib": rss_before, "rss_peak_kib": peak, "rss_after_kib": rss_kib(ps),
    }
    for c in clients:
        c.s.close()
    return result


def main(argv):
    args = {"--path": "/1k.html", "--pids": "", "--count": "200", "--gap": "0.02"}
    mode = argv[0]
    for k, v in zip(argv[1::2], argv[2::2]):
        args[k] = v
    port = int(args["--port"])
    if mode == "probe":
        out = probe(port, int(args["--count"]), float(args["--gap"]), args["--path"])
    else:
        pids = [int(p) for p in args["--pids"].split(",") if p]
        out = {"flood": flood, "bodies": bodies, "slowloris": slowloris,
               "headers": headers}[mode](port, pids, args["--path"])
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
