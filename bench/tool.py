#!/usr/bin/env python3
"""Helpers for bench/run (standard library only).

  tool.py wrk FILE                 parse one wrk --latency output; print a TSV fragment
  tool.py hold --port P --count N --pids A,B [...]
                                   hold N idle keep-alive connections, print RSS growth (JSON)
  tool.py report DIR               turn DIR/raw.tsv, DIR/idle.tsv and DIR/meta.txt into
                                   DIR/table.md (printed too)

Every loop here is bounded in count and in time.
"""

import json
import os
import resource
import selectors
import socket
import statistics
import sys
import time

# ---------------------------------------------------------------------------------------------
# wrk output


def _to_us(text):
    """'273.00us' / '1.23ms' / '2.01s' -> microseconds (float)."""
    text = text.strip()
    for unit, mult in (("us", 1.0), ("ms", 1000.0), ("s", 1_000_000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * mult
    return float(text)


def parse_wrk(path):
    """Returns dict: requests, rps, p50_us, p99_us, errors, non2xx."""
    out = {"requests": 0, "rps": 0.0, "p50_us": 0.0, "p99_us": 0.0, "errors": 0, "non2xx": 0}
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    in_dist = False
    for line in lines:
        s = line.strip()
        if s.startswith("Latency Distribution"):
            in_dist = True
            continue
        if in_dist and s[:3] in ("50%", "99%"):
            val = _to_us(s.split()[1])
            out["p50_us" if s.startswith("50%") else "p99_us"] = val
            continue
        if in_dist and not s[:1].isdigit():
            in_dist = False
        if " requests in " in s:
            out["requests"] = int(s.split()[0])
        elif s.startswith("Requests/sec:"):
            out["rps"] = float(s.split()[1])
        elif s.startswith("Socket errors:"):
            # Socket errors: connect 0, read 0, write 0, timeout 0
            nums = [int(tok.strip(",")) for tok in s.split()[2:] if tok.strip(",").isdigit()]
            out["errors"] = sum(nums)
        elif s.startswith("Non-2xx or 3xx responses:"):
            out["non2xx"] = int(s.split()[-1])
    return out


def cmd_wrk(args):
    r = parse_wrk(args[0])
    print("\t".join(str(r[k]) for k in ("requests", "rps", "p50_us", "p99_us", "errors", "non2xx")))


# ---------------------------------------------------------------------------------------------
# idle keep-alive connections


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def one_request(port, path, deadline):
    """A blocking request on a fresh connection, closed afterwards (warm-up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=max(0.1, deadline - time.time())) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        for _ in range(10_000):
            if not s.recv(65536):
                break


def head_and_length(buf):
    """(header end, content length) once the head is complete, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return end + 4, length


def cmd_hold(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="tool.py hold")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--path", default="/1k.html")
    ap.add_argument("--pids", required=True, help="server PIDs whose RSS is summed")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to stay idle before measuring")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    a = ap.parse_args(argv)
    pids = [int(p) for p in a.pids.split(",") if p]
    deadline = time.time() + a.timeout

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.count + 64 > hard:
        sys.exit(f"hold: need {a.count + 64} descriptors, the limit is {hard}")

    # Warm the server up (code paths, allocator arenas), then take the baseline.
    for _ in range(10):
        one_request(a.port, a.path, deadline)
    time.sleep(0.5)
    before = rss_kib(pids)

    request = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    failed = 0
    opened = 0
    while opened < a.count and time.time() < deadline:
        n = min(a.batch, a.count - opened)
        pending = {}
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", a.port))
            pending[s.fileno()] = [s, b"", False]
            sel.register(s, selectors.EVENT_WRITE)
        opened += n
        # Each connection: connect, send one request, read its whole response.
        while pending and time.time() < deadline:
            for key, ev in sel.select(timeout=1.0):
                st = pending.get(key.fd)
                if st is None:
                    continue
                s = st[0]
                if ev & selectors.EVENT_WRITE and not st[2]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        failed += 1
                        sel.unregister(s)
                        s.close()
                        del pending[key.fd]
                        continue
                    s.send(request)
                    st[2] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    failed += 1
                    sel.unregister(s)
                    s.close()
                    del pending[key.fd]
                    continue
                st[1] += data
                hl = head_and_length(st[1])
                if hl and len(st[1]) >= hl[0] + hl[1]:
                    sel.unregister(s)
                    socks.append(s)
                    del pending[key.fd]
        for st in pending.values():
            failed += 1
            sel.unregister(st[0])
            st[0].close()

    def alive():
        """Connections the server has not closed (a readable idle socket is at EOF)."""
        chk = selectors.DefaultSelector()
        for s in socks:
            chk.register(s, selectors.EVENT_READ)
        closed = len(chk.select(timeout=0))
        chk.close()
        return len(socks) - closed

    time.sleep(a.hold)
    after = rss_kib(pids)
    still = alive()
    for s in socks:
        s.close()
    held = len(socks)
    res = {
        "count": a.count,
        "held": held,
        "alive": still,
        "failed": failed,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_conn": round((after - before) * 1024 / held) if held else None,
        "timed_out": time.time() >= deadline,
    }
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------
# the report

WORKLOADS = {
    "ka1k-64": "1 KiB, keep-alive, 64 conns",
    "ka1k-256": "1 KiB, keep-alive, 256 conns",
    "close1k-64": "1 KiB, new conn per request, 64 conns",
    "close1k-256": "1 KiB, new conn per request, 256 conns",
    "1m-64": "1 MiB, keep-alive, 64 conns",
    "404-64": "404, keep-alive, 64 conns",
    "cgi-16": "CGI (sh script), keep-alive, 16 conns",
    "php-8": "PHP hello.php through FastCGI (CPU incl. the PHP processes), keep-alive, 8 conns",
}
PHP_PEERS = {"weir": "weir + php-cgi", "nginx": "nginx + php-fpm", "lighttpd": "lighttpd + php-cgi"}
SERVERS = ["weir", "nginx", "lighttpd"]


def fmt_rps(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt_us(x):
    if x is None:
        return "–"
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def load_meta(d):
    meta = {}
    p = os.path.join(d, "meta.txt")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k:
                    meta.setdefault(k, []).append(v)
    return meta


def cmd_report(argv):
    d = argv[0]
    raw = os.path.join(d, "raw.tsv")
    runs = {}  # (variant, workload, server) -> list of dict
    with open(raw, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            key = (row["variant"], row["workload"], row["server"])
            runs.setdefault(key, []).append(row)
    meta = load_meta(d)
    weir_log_ok = meta.get("weir_access_log", ["?"])[-1] == "written"

    def med(variant, wl, server, field):
        rows = runs.get((variant, wl, server))
        if not rows:
            return None
        return statistics.median(float(r[field]) for r in rows)

    def cpu_per_req(variant, wl, server, field="cpu_ticks"):
        rows = runs.get((variant, wl, server))
        if not rows:
            return None
        vals = []
        for r in rows:
            n = int(r["requests"])
            if n and field in r:
                vals.append(int(r[field]) * 1_000_000 / int(meta.get("clk_tck", ["100"])[-1]) / n)
        return statistics.median(vals) if vals else None

    def app_per_req(variant, wl, server):
        """CPU µs per request of the PHP processes alone (app_ticks; newer runs only)."""
        rows = runs.get((variant, wl, server)) or []
        if not rows or "app_ticks" not in rows[0]:
            return None
        return cpu_per_req(variant, wl, server, "app_ticks")

    def stack_per_req(variant, wl, server):
        """CPU µs per request of everything under the server (and its FastCGI application):
        the processes' own time plus what they reaped (PHP processes recycled by weir's
        launcher or by lighttpd)."""
        own = cpu_per_req(variant, wl, server)
        if own is None:
            return None
        return own + (cpu_per_req(variant, wl, server, "child_ticks") or 0.0)

    def problems(variant, wl, server):
        rows = runs.get((variant, wl, server)) or []
        errs = sum(int(r["errors"]) for r in rows)
        non2xx = sum(int(r["non2xx"]) for r in rows)
        return errs, non2xx

    out = []
    variants = [v for v in ("on", "off") if any(k[0] == v for k in runs)]
    for variant in variants:
        title = "access log on" if variant == "on" else "access log off"
        note = ""
        if variant == "on" and not weir_log_ok:
            note = (" — **weir wrote no access log** (the shell side of `access-log` has not"
                    " landed), so weir's row here is effectively log-off")
        out.append(f"### {title}{note}\n")
        out.append("| workload | weir req/s | nginx req/s | lighttpd req/s | weir/nginx | weir/lighttpd |"
                   " p50 weir / nginx / lighttpd | p99 weir / nginx / lighttpd |"
                   " CPU µs/req weir / nginx / lighttpd |")
        out.append("|---|---:|---:|---:|---:|---:|---|---|---|")
        for wl, desc in WORKLOADS.items():
            if not any((variant, wl, s) in runs for s in SERVERS):
                continue
            rps = {s: med(variant, wl, s, "rps") for s in SERVERS}
            p50 = {s: med(variant, wl, s, "p50_us") for s in SERVERS}
            p99 = {s: med(variant, wl, s, "p99_us") for s in SERVERS}
            cpu = {s: cpu_per_req(variant, wl, s) for s in SERVERS}
            flags = []
            for s in SERVERS:
                e, n2 = problems(variant, wl, s)
                if e:
                    flags.append(f"{s}: {e} socket errors")
                if n2 and not wl.startswith("404"):
                    flags.append(f"{s}: {n2} non-2xx")
            desc2 = desc + (f" ({'; '.join(flags)})" if flags else "")
            out.append(
                f"| {desc2} | {fmt_rps(rps['weir'])} | {fmt_rps(rps['nginx'])} | {fmt_rps(rps['lighttpd'])} |"
                f" {fmt_ratio(rps['weir'], rps['nginx'])} | {fmt_ratio(rps['weir'], rps['lighttpd'])} |"
                f" {fmt_us(p50['weir'])} / {fmt_us(p50['nginx'])} / {fmt_us(p50['lighttpd'])} |"
                f" {fmt_us(p99['weir'])} / {fmt_us(p99['nginx'])} / {fmt_us(p99['lighttpd'])} |"
                f" {fmt_cpu(cpu['weir'])} / {fmt_cpu(cpu['nginx'])} / {fmt_cpu(cpu['lighttpd'])} |"
            )
        out.append("")

    # PHP through FastCGI: the whole stack's CPU, split into the server and the PHP processes.
    php_wls = [wl for wl in WORKLOADS if wl.startswith("php-")]
    for variant in variants:
        for wl in php_wls:
            if not any((variant, wl, s) in runs for s in SERVERS):
                continue
            title = "access log on" if variant == "on" else "access log off"
            settings = meta.get("php_settings", ["?"])[-1]
            out.append(f"### PHP through FastCGI: {WORKLOADS[wl]}, {title} ({settings})\n")
            out.append("| server + PHP | req/s | ×nginx | p50 | p99 | CPU µs/req (all) | of which the server |"
                       " of which PHP | CPU ×nginx | errors / non-2xx |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            n_rps, n_cpu = med(variant, wl, "nginx", "rps"), stack_per_req(variant, wl, "nginx")
            for s in SERVERS:
                if (variant, wl, s) not in runs:
                    out.append(f"| {PHP_PEERS[s]} | n/a | | | | | | | | |")
                    continue
                rps, total, app = med(variant, wl, s, "rps"), stack_per_req(variant, wl, s), app_per_req(variant, wl, s)
                srv = None if total is None or app is None else total - app
                e, n2 = problems(variant, wl, s)
                out.append(
                    f"| {PHP_PEERS[s]} | {fmt_rps(rps)} | {fmt_ratio(rps, n_rps)} | {fmt_us(med(variant, wl, s, 'p50_us'))} |"
                    f" {fmt_us(med(variant, wl, s, 'p99_us'))} | {fmt_cpu(total)} | {fmt_cpu(srv)} | {fmt_cpu(app)} |"
                    f" {fmt_ratio(total, n_cpu)} |"
                    f" {e} / {n2} |"
                )
            out.append("")

    idle = os.path.join(d, "idle.tsv")
    idle_rows = {}
    if os.path.exists(idle):
        with open(idle, encoding="utf-8") as f:
            for line in f:
                server, js = line.rstrip("\n").split("\t", 1)
                idle_rows[server] = json.loads(js)
        out.append("### idle keep-alive connections (fresh server, log off)\n")
        out.append("| server | held / asked | still open after hold | RSS before | RSS after | bytes per connection |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for s in SERVERS:
            r = idle_rows.get(s)
            if not r:
                continue
            out.append(
                f"| {s} | {r['held']:,} / {r['count']:,} | {r['alive']:,} | {r['rss_before_kib']:,} KiB |"
                f" {r['rss_after_kib']:,} KiB | {r['bytes_per_conn'] if r['bytes_per_conn'] is not None else '–':,} |"
            )
        out.append("")

    # Targets (DESIGN issue): ratios against the faster peer, log on (log off if weir wrote none).
    tv = "on" if ("on" in variants and weir_log_ok) or "off" not in variants else "off"
    out.append(f"### targets (variant: access log {tv})\n")
    out.append("| target | measured | met? |")
    out.append("|---|---|---|")

    def faster_peer(wl, field="rps"):
        cands = [(med(tv, wl, s, field), s) for s in ("nginx", "lighttpd")]
        cands = [c for c in cands if c[0] is not None]
        return max(cands) if cands else (None, None)

    for wl in ("ka1k-64", "ka1k-256"):
        w = med(tv, wl, "weir", "rps")
        pv, ps = faster_peer(wl)
        if w is None or pv is None:
            continue
        wp99 = med(tv, wl, "weir", "p99_us")
        pp99 = med(tv, wl, ps, "p99_us")
        ok = w >= 1.1 * pv and wp99 <= pp99
        wc, pc = cpu_per_req(tv, wl, "weir"), cpu_per_req(tv, wl, ps)
        cpu_note = f"; CPU/req {fmt_cpu(wc)} vs {fmt_cpu(pc)} µs" if wc and pc else ""
        out.append(
            f"| {WORKLOADS[wl]}: ≥ 1.1× the faster peer's req/s, p99 ≤ its p99 |"
            f" {w / pv:.2f}× {ps}; p99 {fmt_us(wp99)} vs {fmt_us(pp99)}{cpu_note} | {'met' if ok else '**not met**'} |"
        )
    for wl in ("close1k-64", "close1k-256"):
        w = cpu_per_req(tv, wl, "weir")
        peers = [(cpu_per_req(tv, wl, s), s) for s in ("nginx", "lighttpd")]
        peers = [p for p in peers if p[0] is not None]
        if w is None or not peers:
            continue
        pv, ps = min(peers)
        out.append(
            f"| {WORKLOADS[wl]}: server CPU per request ≤ 0.85× the better peer's |"
            f" {fmt_cpu(w)} vs {ps} {fmt_cpu(pv)} = {w / pv:.2f}× | {'met' if w <= 0.85 * pv else '**not met**'} |"
        )
    w = med(tv, "1m-64", "weir", "rps")
    pv, ps = faster_peer("1m-64")
    if w is not None and pv is not None:
        out.append(
            f"| 1 MiB: ≥ 1.0× the faster peer's req/s | {w / pv:.2f}× {ps} |"
            f" {'met' if w >= pv else '**not met**'} |"
        )
    w = med(tv, "cgi-16", "weir", "rps")
    lv = med(tv, "cgi-16", "lighttpd", "rps")
    if w is not None and lv is not None:
        ws, ls = cpu_per_req(tv, "cgi-16", "weir"), cpu_per_req(tv, "cgi-16", "lighttpd")
        wk = cpu_per_req(tv, "cgi-16", "weir", "child_ticks")
        lk = cpu_per_req(tv, "cgi-16", "lighttpd", "child_ticks")
        note = ""
        if None not in (ws, ls, wk, lk):
            note = (f"; CPU/req server {fmt_cpu(ws)} vs {fmt_cpu(ls)} µs,"
                    f" scripts {fmt_cpu(wk)} vs {fmt_cpu(lk)} µs")
        out.append(
            f"| CGI: ≥ 1.5× lighttpd mod_cgi | {w / lv:.2f}×{note} | {'met' if w >= 1.5 * lv else '**not met**'} |"
        )
    elif lv is not None:
        out.append("| CGI: ≥ 1.5× lighttpd mod_cgi | weir did not serve the CGI script | **not measured** |")
    for wl in php_wls:
        w, nv = med(tv, wl, "weir", "rps"), med(tv, wl, "nginx", "rps")
        if w is None or nv is None:
            continue
        wc, nc = stack_per_req(tv, wl, "weir"), stack_per_req(tv, wl, "nginx")
        if wc is None or not nc:
            continue
        ok = w >= nv and wc < nc
        out.append(
            f"| PHP (weir + php-cgi against nginx + php-fpm): ≥ 1.0× nginx's req/s and less server CPU per request |"
            f" {w / nv:.2f}× req/s; CPU/req {fmt_cpu(wc)} vs {fmt_cpu(nc)} µs = {wc / nc:.2f}× |"
            f" {'met' if ok else '**not met**'} |"
        )
    r = idle_rows.get("weir")
    if r and r["bytes_per_conn"] is not None:
        out.append(
            f"| idle keep-alive connection ≤ 512 bytes (RSS growth ÷ {r['held']:,}) |"
            f" {r['bytes_per_conn']:,} bytes | {'met' if r['bytes_per_conn'] <= 512 else '**not met**'} |"
        )
    out.append("")
    text = "\n".join(out)
    with open(os.path.join(d, "table.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text)


def fmt_cpu(x):
    return "–" if x is None else f"{x:.1f}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wrk":
        cmd_wrk(args)
    elif cmd == "hold":
        cmd_hold(args)
    elif cmd == "report":
        cmd_report(args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
