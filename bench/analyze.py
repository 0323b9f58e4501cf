#!/usr/bin/env python3
"""Numbers for bench/pgbench.sh (stdlib only).

  analyze.py run    --meta JSON --out FILE --err FILE --logdir DIR --cpu-ticks N --clk-tck N --rc N
                    [--host-ticks STEAL0 TOTAL0 STEAL1 TOTAL1]
      one pgbench run -> one JSON line on stdout (tps, mean/p99 latency from
      the per-transaction logs of `pgbench -l`, proxy CPU per transaction,
      the machine's steal during the run)
  analyze.py report --runs runs.jsonl --machine machine.json [--idle idle.json] [--ab ab.jsonl] [--profile profile.md]
      all runs -> the Markdown report (medians over repetitions)
  analyze.py pooled [--calm] RUNS.jsonl...
      the target rows over the repetitions of several runs: per row the
      median of the per-repetition ratios, its bootstrap 95 % interval, and
      whether that interval lies on the target's side of the bound
      (--calm: only the repetitions whose runs lost little to steal)
"""

import argparse
import glob
import json
import os
import random
import re
import statistics
import sys

TARGETS = ["direct", "pgb-session", "pgt-session", "pgb-tx", "pgt-tx"]
PEER = {"pgt-session": "pgb-session", "pgt-tx": "pgb-tx"}
SCRIPT_NAME = {"select": "-S (select only)", "tpcb": "TPC-B-like"}
# Steal (% of the machine's CPU time) from which a run counts as disturbed.
STEAL_HIGH = 5.0


# --------------------------------------------------------------------- run


def parse_pgbench(text):
    def num(pattern, cast=float):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else None

    return {
        "txs": num(r"number of transactions actually processed: (\d+)", int),
        "failed_txs": num(r"number of failed transactions: (\d+)", int),
        "tps": num(r"^tps = ([\d.]+)"),
        "pgbench_lat_ms": num(r"^latency average = ([\d.]+) ms"),
        "conn_ms": num(r"^average connection time = ([\d.]+) ms"),
    }


def latencies(logdir):
    """Per-transaction latencies (µs) from `pgbench -l` files in logdir."""
    out = []
    for path in glob.glob(os.path.join(logdir, "tx*")):
        with open(path) as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us ...
                if len(parts) >= 3 and parts[2].isdigit():
                    out.append(int(parts[2]))
    return out


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def cmd_run(a):
    rec = json.loads(a.meta)
    out = open(a.out, errors="replace").read() if os.path.exists(a.out) else ""
    err = open(a.err, errors="replace").read() if os.path.exists(a.err) else ""
    rec.update(parse_pgbench(out))
    lats = sorted(latencies(a.logdir)) if a.logdir else []
    if lats:
        rec["lat_mean_ms"] = sum(lats) / len(lats) / 1000.0
        rec["lat_p99_ms"] = percentile(lats, 99) / 1000.0
        rec["logged_txs"] = len(lats)
    elif rec.get("pgbench_lat_ms") is not None:
        rec["lat_mean_ms"] = rec["pgbench_lat_ms"]
    if a.cpu_ticks is not None and a.cpu_ticks >= 0 and rec.get("txs"):
        rec["cpu_us_per_tx"] = a.cpu_ticks * 1e6 / a.clk_tck / rec["txs"]
        rec["cpu_s"] = a.cpu_ticks / a.clk_tck
        if a.user_ticks is not None and a.user_ticks >= 0:
            rec["user_us_per_tx"] = a.user_ticks * 1e6 / a.clk_tck / rec["txs"]
    if a.host_ticks:
        steal0, total0, steal1, total1 = a.host_ticks
        if total1 > total0:
            rec["steal_pct"] = 100.0 * (steal1 - steal0) / (total1 - total0)
    ok = a.rc == 0 and rec.get("tps") is not None and (rec.get("txs") or 0) > 0
    if ok and (rec.get("failed_txs") or 0) > 0:
        ok = False
    rec["status"] = "ok" if ok else "fail"
    # pgbench.sh runs such a run again (STEAL_RETRY): the threshold lives here.
    rec["high_steal"] = not calm(rec) and rec.get("steal_pct") is not None
    if not ok:
        errl = [l for l in err.splitlines() if l.strip()]
        outl = [l for l in out.splitlines() if re.match(r"(number of (transactions|failed)|tps|latency average)", l)]
        rec["error"] = "\n".join(errl[-15:] + outl) + f"\n(exit code {a.rc})"
    print(json.dumps(rec))


# ------------------------------------------------------------------ report


def load_runs(path):
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
    return runs


def cpu_cell(x):
    """CPU µs per transaction, with its user-space part: the kernel's share
    (TCP, wake-ups) is much the same for any proxy; user space is its code."""
    if not x or x.cpu is None:
        return "–"
    user = f" (user {x.user:.1f})" if x.user is not None else ""
    return f"{x.cpu:.1f} µs{user}"


class Cell:
    """Median of the repetitions of one (kind, script, mode, clients, target)."""

    def __init__(self, recs):
        self.recs = recs
        ok = [r for r in recs if r["status"] == "ok"]
        self.n, self.n_ok = len(recs), len(ok)
        self.na = recs and all(r["status"] == "n/a" for r in recs)
        self.reason = next((r.get("reason") for r in recs if r.get("reason")), "")

        def med(key):
            vals = [r[key] for r in ok if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        self.tps = med("tps")
        self.mean = med("lat_mean_ms")
        self.p99 = med("lat_p99_ms")
        self.cpu = med("cpu_us_per_tx")
        self.user = med("user_us_per_tx")
        self.conn_ms = med("conn_ms")
        self.tps_spread = None
        vals = [r["tps"] for r in ok if r.get("tps")]
        if len(vals) > 1 and self.tps:
            self.tps_spread = (max(vals) - min(vals)) / self.tps * 100

    @property
    def ok(self):
        return self.n_ok > 0

    def status(self):
        if self.na:
            return "n/a"
        if self.n_ok == 0:
            return "FAIL"
        if self.n_ok < self.n:
            return f"{self.n - self.n_ok}/{self.n} failed"
        return ""


def fmt(v, digits=0, unit=""):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}×"


def cells(runs, kind):
    groups = {}
    for r in runs:
        # A run that lost much to steal and was run again counts once, last.
        if r.get("kind") != kind or r.get("retried"):
            continue
        key = (r["script"], r["mode"], r["clients"], r["target"])
        groups.setdefault(key, []).append(r)
    return {k: Cell(v) for k, v in groups.items()}


def keys_in_order(cs):
    scripts = sorted({k[0] for k in cs}, key=lambda s: ["select", "tpcb"].index(s) if s in ("select", "tpcb") else 9)
    modes = [m for m in ["simple", "extended", "prepared"] if any(k[1] == m for k in cs)]
    clients = sorted({k[2] for k in cs})
    return scripts, modes, clients


def short_reason(r):
    if "transaction" in r and "pgtenant" in r.lower() or "PGTENANT_POOL_MODE" in r:
        return "pgtenant transaction mode unavailable (see notes)"
    if "PgBouncer" in r:
        return "PgBouncer < 1.21: no prepared statements in transaction mode"
    return r[:80]


def calm(r):
    """The run lost less than STEAL_HIGH of the machine to other guests
    (runs recorded before steal was are not known to be calm)."""
    return r.get("steal_pct") is not None and r["steal_pct"] < STEAL_HIGH


def by_rep(cell, key, calm_only=False):
    """{repetition: value} of one cell's successful (and calm) runs."""
    if not cell:
        return {}
    return {
        r["rep"]: r[key]
        for r in cell.recs
        if r["status"] == "ok" and r.get(key) is not None and (not calm_only or calm(r))
    }


def rep_ratios(num, den):
    """The ratio within each repetition both sides ran in."""
    return [num[k] / den[k] for k in sorted(num) if k in den and den[k] > 0]


def added_us(cs, s, m, c, t):
    x, d = cs.get((s, m, c, t)), cs.get((s, m, c, "direct"))
    if not x or not d or x.mean is None or d.mean is None:
        return None
    return (x.mean - d.mean) * 1000.0


def ab_sense(x):
    """What the interval says about pgtenant's added latency against
    PgBouncer's (bench/latency_ab.py: paired per round, direct cancels)."""
    lo, hi = x["diff_ci95"]
    n = f"{x['diff_us']:+.1f} µs, 95% CI {lo:+.1f} to {hi:+.1f}"
    if hi < 0:
        return f"lower, {n}"
    if lo > 0:
        return f"higher, {n}"
    return f"no difference resolved, {n}"


def ratio_rows(cs, cc, modes, scripts, calm_only):
    """(target, row, bound, good if ≤ bound, per-repetition ratios) of
    every ratio target; calm_only: only repetitions all of whose runs in
    the ratio were calm."""
    rows = []

    def reps_of(x, y, key):
        return rep_ratios(by_rep(x, key, calm_only), by_rep(y, key, calm_only))

    for pool in ["session", "tx"]:
        t, p = f"pgt-{pool}", f"pgb-{pool}"
        for m in modes:
            d = by_rep(cs.get(("select", m, 1, "direct")), "lat_mean_ms", calm_only)

            def added(c):
                return {k: v - d[k] for k, v in by_rep(c, "lat_mean_ms", calm_only).items() if k in d}

            reps = rep_ratios(added(cs.get(("select", m, 1, t))), added(cs.get(("select", m, 1, p))))
            rows.append(("added latency", f"-S -M {m} 1 client, {pool}", 1.0, True, reps))
    for kind, c, key, le in (("CPU/tx", 16, "cpu_us_per_tx", True), ("tps", 64, "tps", False)):
        for pool in ["session", "tx"]:
            t, p = f"pgt-{pool}", f"pgb-{pool}"
            for s in scripts:
                for m in modes:
                    reps = reps_of(cs.get((s, m, c, t)), cs.get((s, m, c, p)), key)
                    rows.append((kind, f"{s} -M {m} {c} clients, {pool}", 1.0, le, reps))
    for (s, m, c, t), x in sorted(cc.items()):
        if t in PEER:
            reps = reps_of(x, cc.get((s, m, c, PEER[t])), "tps")
            rows.append(("-C conn/s", f"{c} clients, {t[4:]}", 0.9, False, reps))
    return rows


def report(a):
    runs = load_runs(a.runs)
    machine = json.load(open(a.machine)) if a.machine and os.path.exists(a.machine) else {}
    ab = []
    if a.ab and os.path.exists(a.ab):
        ab = [json.loads(l) for l in open(a.ab) if l.strip()]
    idle = None
    if a.idle and os.path.exists(a.idle):
        idle = [json.loads(l) for l in open(a.idle) if l.strip()]
    out = []
    w = out.append

    w(f"# pgtenant benchmark — {machine.get('date', '')} on {machine.get('host', '')}")
    w("")
    w("## Machine and setup")
    w("")
    for k in ["cpu", "nproc", "mem", "kernel", "os", "postgres", "pgbouncer", "pgtenant", "rustc"]:
        if k in machine:
            w(f"- **{k}**: {machine[k]}")
    w(f"- **command**: `{machine.get('command', '')}`")
    w(f"- **settings**: {machine.get('settings', '')}")
    w("- All targets share one PostgreSQL (fsync off, tuned for benchmarking) and one machine; ")
    w("  pgbench, PostgreSQL and the proxy compete for the same cores, so compare ratios within one run.")
    w("- *added µs* = mean latency through the target − mean latency direct (same script, -M, clients).")
    w("- *CPU µs/tx* = the proxy process's utime+stime (/proc/PID/stat) over the run ÷ transactions;")
    w("  *user* = utime alone: the proxy's own code (the kernel's TCP and wake-up work is the rest).")
    w("- *pgt/pgb* ratios compare pgtenant with PgBouncer in the same pool mode and protocol:")
    w("  tps (≥ 1 is better), added latency and CPU (≤ 1 is better). Medians over repetitions.")
    w("- *interleaved* rows (bench/latency_ab.py): one client process holds a connection to every target")
    w("  and runs -S's statement on each in turn, 1,000 at a time, in a new random order every round;")
    w("  each round gives one paired sample of pgtenant's latency minus PgBouncer's (direct cancels out),")
    w("  with a bootstrap 95% interval over rounds, free of the drift between pgbench runs.")
    if machine.get("notes"):
        for n in machine["notes"]:
            w(f"- **note**: {n}")
    w("")

    cs = cells(runs, "tx")
    cc = cells(runs, "connect")
    scripts, modes, clients = keys_in_order(cs)
    # The per-repetition ratios of every ratio target, by (target, row).
    per_rep = {(k, label): reps for k, label, _, _, reps in ratio_rows(cs, cc, modes, scripts, calm_only=False)}

    # ---- targets summary
    w("## Targets (issue 6)")
    w("")
    w("Ratio: of the medians, with the range of the ratio repetition by repetition")
    w("(each repetition runs every target back to back).")
    w("")
    w("| target | row | pgtenant | PgBouncer | ratio (per rep) | verdict |")
    w("|---|---|---|---|---|---|")

    def verdict(r, good_if_le, bound, reps=None):
        """Met or missed by the medians; `reps` (the ratio repetition by
        repetition) says how many repetitions agree, so that a verdict
        inside the machine's noise reads as such."""
        if r is None:
            return "n/a"
        meets = (lambda v: v <= bound) if good_if_le else (lambda v: v >= bound)
        ok = meets(r)
        short = (r / bound - 1 if good_if_le else 1 - r / bound) * 100
        text = "met" if ok else f"**missed** by {short:.0f}%" if short >= 1 else f"**missed** by {short:.1f}%"
        if reps and len(reps) > 1:
            agree = sum(1 for v in reps if meets(v) == ok)
            if agree < len(reps):
                text += f" ({len(reps) - agree} of {len(reps)} reps {'missed' if ok else 'met'})"
        return text

    def ratio_cell(r, reps):
        if r is None or not reps or len(reps) < 2:
            return fmt_ratio(r)
        return f"{fmt_ratio(r)} ({min(reps):.2f}–{max(reps):.2f})"

    for pool in ["session", "tx"]:
        t, p = f"pgt-{pool}", f"pgb-{pool}"
        for m in modes:
            a_ = added_us(cs, "select", m, 1, t)
            b_ = added_us(cs, "select", m, 1, p)
            r = ratio(a_, b_) if (a_ is not None and b_ is not None and b_ > 0) else None
            reps = per_rep[("added latency", f"-S -M {m} 1 client, {pool}")]
            w(f"| added latency ≤ 1.0× | -S -M {m} 1 client, {pool} | {fmt(a_, 1, ' µs')} | {fmt(b_, 1, ' µs')} | {ratio_cell(r, reps)} | {verdict(r, True, 1.0, reps)} |")
    for rec in ab:
        for pool, x in rec["ratios"].items():
            t, p = rec["targets"][f"pgt-{pool}"], rec["targets"][f"pgb-{pool}"]
            lo, hi = x["ratio_ci95"]
            cell = f"{fmt_ratio(x['ratio'])} (95% CI {lo:.2f}–{hi:.2f})"
            w(f"| added latency ≤ 1.0×, interleaved | -S -M {rec['mode']} 1 client, {pool} | {fmt(t['added_us'], 1, ' µs')} | {fmt(p['added_us'], 1, ' µs')} | {cell} | {verdict(x['ratio'], True, 1.0)}; {ab_sense(x)} |")
    for pool in ["session", "tx"]:
        t, p = f"pgt-{pool}", f"pgb-{pool}"
        for s in scripts:
            for m in modes:
                x, y = cs.get((s, m, 16, t)), cs.get((s, m, 16, p))
                r = ratio(x.cpu if x else None, y.cpu if y else None)
                reps = per_rep[("CPU/tx", f"{s} -M {m} 16 clients, {pool}")]
                w(f"| CPU/tx ≤ 1.0× | {s} -M {m} 16 clients, {pool} | {cpu_cell(x)} | {cpu_cell(y)} | {ratio_cell(r, reps)} | {verdict(r, True, 1.0, reps)} |")
    for pool in ["session", "tx"]:
        t, p = f"pgt-{pool}", f"pgb-{pool}"
        for s in scripts:
            for m in modes:
                x, y = cs.get((s, m, 64, t)), cs.get((s, m, 64, p))
                r = ratio(x.tps if x else None, y.tps if y else None)
                reps = per_rep[("tps", f"{s} -M {m} 64 clients, {pool}")]
                w(f"| tps ≥ 1.0× | {s} -M {m} 64 clients, {pool} | {fmt(x.tps if x else None)} | {fmt(y.tps if y else None)} | {ratio_cell(r, reps)} | {verdict(r, False, 1.0, reps)} |")
    for (s, m, c, t), x in sorted(cc.items()):
        if t in PEER:
            y = cc.get((s, m, c, PEER[t]))
            r = ratio(x.tps, y.tps if y else None)
            reps = per_rep[("-C conn/s", f"{c} clients, {t[4:]}")]
            w(f"| -C conn/s ≥ 0.9× | {c} clients, {t[4:]} | {fmt(x.tps)} | {fmt(y.tps if y else None)} | {ratio_cell(r, reps)} | {verdict(r, False, 0.9, reps)} |")
    if idle:
        for rec in idle:
            if rec.get("comparison"):
                continue
            # After login, and once each has run a query (what they keep).
            for key, when in (("kib_per_client", ""), ("kib_per_client_after_query", ", once each ran a query")):
                v = rec.get(key)
                if v is not None:
                    lab = rec.get("label", "") + when
                    w(f"| idle ≤ 16 KiB/client | {lab} | {v:.1f} KiB | – | – | {'met' if v <= 16 else '**missed** by ' + f'{(v / 16 - 1) * 100:.0f}%'} |")
    w("")

    # ---- the ratio targets again, over calm repetitions only
    rows = ratio_rows(cs, cc, modes, scripts, calm_only=True)
    ran = [bool(per_rep[(k, label)]) for k, label, *_ in rows]
    if any(reps for *_, reps in rows):
        w("## Targets over calm repetitions")
        w("")
        w(f"Only the repetitions in which every run a ratio needs (pgtenant's and PgBouncer's; direct's too for")
        w(f"added latency) lost less than {STEAL_HIGH:.0f}% of the machine to steal (see *Steal during the runs*);")
        w("the ratio is the median of their per-repetition ratios.")
        w("")
        w("| target | row | calm reps | ratio (per rep) | verdict |")
        w("|---|---|---|---|---|")
        for (kind, label, bound, le, reps), any_rep in zip(rows, ran):
            op = "≤" if le else "≥"
            if not reps:
                w(f"| {kind} {op} {bound}× | {label} | 0 | – | {'no calm repetition' if any_rep else 'n/a'} |")
                continue
            r = statistics.median(reps)
            w(f"| {kind} {op} {bound}× | {label} | {len(reps)} | {ratio_cell(r, reps)} | {verdict(r, le, bound, reps)} |")
        w("")

    # ---- compact table
    w("## Compact table (tps / added µs / proxy CPU µs per tx)")
    w("")
    hdr = ["script", "-M", "c", "direct tps"]
    for t in TARGETS[1:]:
        hdr.append(t)
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" * len(hdr))
    for s in scripts:
        for m in modes:
            for c in clients:
                d = cs.get((s, m, c, "direct"))
                row = [s, m, str(c), fmt(d.tps) if d and d.ok else (d.status() if d else "–")]
                for t in TARGETS[1:]:
                    x = cs.get((s, m, c, t))
                    if not x:
                        row.append("–")
                    elif not x.ok:
                        row.append(x.status())
                    else:
                        row.append(f"{fmt(x.tps)} / {fmt(added_us(cs, s, m, c, t), 0)} / {fmt(x.cpu, 1)}")
                w("| " + " | ".join(row) + " |")
    w("")

    # ---- full table
    w("## Full table")
    w("")
    w("| script | -M | clients | target | tps | mean ms | p99 ms | added µs | CPU µs/tx | user µs/tx | pgt/pgb tps | pgt/pgb added | pgt/pgb CPU | note |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in scripts:
        for m in modes:
            for c in clients:
                for t in TARGETS:
                    x = cs.get((s, m, c, t))
                    if not x:
                        continue
                    add = added_us(cs, s, m, c, t) if t != "direct" else None
                    rt = ra = rc = None
                    if t in PEER:
                        y = cs.get((s, m, c, PEER[t]))
                        if y and y.ok and x.ok:
                            rt = ratio(x.tps, y.tps)
                            pa = added_us(cs, s, m, c, PEER[t])
                            ra = ratio(add, pa) if (add is not None and pa and pa > 0) else None
                            rc = ratio(x.cpu, y.cpu)
                    note = x.status()
                    if x.na and x.reason:
                        note = "n/a: " + short_reason(x.reason)
                    if x.tps_spread is not None and x.tps_spread > 10:
                        note = (note + " " if note else "") + f"tps spread {x.tps_spread:.0f}%"
                    w(
                        f"| {s} | {m} | {c} | {t} | {fmt(x.tps)} | {fmt(x.mean, 3)} | {fmt(x.p99, 3)} | "
                        f"{'' if t == 'direct' else fmt(add, 1)} | {'' if t == 'direct' else fmt(x.cpu, 1)} | "
                        f"{'' if t == 'direct' else fmt(x.user, 1)} | "
                        f"{fmt_ratio(rt) if t in PEER else ''} | {fmt_ratio(ra) if t in PEER else ''} | {fmt_ratio(rc) if t in PEER else ''} | {note} |"
                    )
    w("")

    # ---- connect
    if cc:
        w("## Connection setup: `pgbench -C -S -M simple` (one connection per transaction)")
        w("")
        w("| clients | target | conn/s | avg connect ms | CPU µs/conn | pgt/pgb conn/s | pgt/pgb CPU | note |")
        w("|---|---|---|---|---|---|---|---|")
        for c in sorted({k[2] for k in cc}):
            for t in TARGETS:
                x = cc.get(("select", "simple", c, t))
                if not x:
                    continue
                rt = rc = None
                if t in PEER:
                    y = cc.get(("select", "simple", c, PEER[t]))
                    if y and y.ok and x.ok:
                        rt, rc = ratio(x.tps, y.tps), ratio(x.cpu, y.cpu)
                note = x.status()
                if x.na and x.reason:
                    note = "n/a: " + short_reason(x.reason)
                w(f"| {c} | {t} | {fmt(x.tps)} | {fmt(x.conn_ms, 3)} | {'' if t == 'direct' else fmt(x.cpu, 1)} | "
                  f"{fmt_ratio(rt) if t in PEER else ''} | {fmt_ratio(rc) if t in PEER else ''} | {note} |")
        w("")

    # ---- idle
    if idle:
        w("## Idle client footprint (`bench/idle_clients.py`)")
        w("")
        w("| measurement | clients held | RSS before | RSS with clients | KiB per client | "
          "RSS once each ran `SELECT 1` (still connected) | KiB per client then | RSS after close | note |")
        w("|---|---|---|---|---|---|---|---|---|")
        for rec in idle:
            w(f"| {rec.get('label', '')} | {rec.get('connected', 0):,} of {rec.get('wanted', 0):,} | "
              f"{fmt(rec.get('rss_before_kib'), 0, ' KiB')} | {fmt(rec.get('rss_with_clients_kib'), 0, ' KiB')} | "
              f"{fmt(rec.get('kib_per_client'), 1)} | {fmt(rec.get('rss_after_query_kib'), 0, ' KiB')} | "
              f"{fmt(rec.get('kib_per_client_after_query'), 1)} | "
              f"{fmt(rec.get('rss_after_close_kib'), 0, ' KiB')} | {rec.get('note', '')} |")
        w("")

    # ---- steal
    stolen = [r for r in runs if r.get("steal_pct") is not None]
    if stolen:
        w("## Steal during the runs")
        w("")
        w("The share of the machine's CPU time the hypervisor gave to other guests while each pgbench")
        w("ran (`/proc/stat`): a target whose runs lost more to steal had less machine to work with.")
        w(f"A run losing {STEAL_HIGH:.0f}% or more is counted as high; with `STEAL_RETRY` set, such a run")
        w("was run again after waiting for a calm probe (`STEAL_WAIT` s at most), and the tables read the last")
        w("attempt. Every attempt is counted here.")
        w("")
        w("| target | runs | median steal | max steal | runs with high steal | of them run again |")
        w("|---|---|---|---|---|---|")
        for t in TARGETS:
            mine = [r for r in stolen if r["target"] == t]
            vals = sorted(r["steal_pct"] for r in mine)
            if vals:
                high = sum(1 for v in vals if v >= STEAL_HIGH)
                again = sum(1 for r in mine if r.get("retried"))
                w(f"| {t} | {len(vals)} | {statistics.median(vals):.1f}% | {vals[-1]:.1f}% | {high} | {again} |")
        w("")

    # ---- problems
    bad = [r for r in runs if r["status"] == "fail"]
    if bad:
        w("## Failed runs")
        w("")
        seen = set()
        for r in bad:
            k = (r["target"], r.get("error", ""))
            if k in seen:
                continue
            seen.add(k)
            w(f"- `{r['kind']} {r['target']} {r['script']} -M {r['mode']} -c {r['clients']} rep {r['rep']}`:")
            w("  ```")
            for line in (r.get("error") or "").splitlines():
                w("  " + line)
            w("  ```")
            if r.get("proxy_log"):
                w("  proxy log tail:")
                w("  ```")
                for line in r["proxy_log"].splitlines():
                    w("  " + line)
                w("  ```")
        w("")

    if a.profile and os.path.exists(a.profile):
        w(open(a.profile).read())
    print("\n".join(out))


def pooled(a):
    """Per target row, the ratio within every repetition of every run."""
    rows = {}
    for path in a.files:
        recs = {}
        for r in load_runs(path):
            if r["status"] == "ok" and not r.get("retried") and (not a.calm or calm(r)):
                recs[(r["kind"], r["script"], r["mode"], r["clients"], r["target"], r["rep"])] = r
        for (kind, s, m, c, t, rep), r in recs.items():
            if t not in PEER:
                continue
            p, pool = recs.get((kind, s, m, c, PEER[t], rep)), t[4:]
            if not p:
                continue
            if kind == "connect":
                rows.setdefault(("-C conn/s", f"{c} clients, {pool}", 0.9, False), []).append(r["tps"] / p["tps"])
                continue
            d = recs.get((kind, s, m, c, "direct", rep))
            if c == 1 and s == "select" and d and p["lat_mean_ms"] > d["lat_mean_ms"]:
                v = (r["lat_mean_ms"] - d["lat_mean_ms"]) / (p["lat_mean_ms"] - d["lat_mean_ms"])
                rows.setdefault(("added latency", f"-S -M {m} 1 client, {pool}", 1.0, True), []).append(v)
            if c == 16 and r.get("cpu_us_per_tx") and p.get("cpu_us_per_tx"):
                v = r["cpu_us_per_tx"] / p["cpu_us_per_tx"]
                rows.setdefault(("CPU/tx", f"{s} -M {m} 16 clients, {pool}", 1.0, True), []).append(v)
            if c == 64:
                rows.setdefault(("tps", f"{s} -M {m} 64 clients, {pool}", 1.0, False), []).append(r["tps"] / p["tps"])
    rng = random.Random(1)
    print(f"Pooled over {len(a.files)} runs: " + ", ".join(os.path.basename(f) for f in a.files))
    if a.calm:
        print(f"Calm repetitions only: every run in a ratio lost less than {STEAL_HIGH:.0f}% to steal.")
    print("")
    print("| target | row | reps | median ratio | 95% CI | reps on target | pooled verdict |")
    print("|---|---|---|---|---|---|---|")
    order = ["added latency", "CPU/tx", "tps", "-C conn/s"]
    for (kind, label, bound, le), v in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1].endswith("tx"))):
        meds = sorted(statistics.median(rng.choices(v, k=len(v))) for _ in range(2000))
        lo, hi = meds[50], meds[1949]
        good = (lambda x: x <= bound) if le else (lambda x: x >= bound)
        sense = "met" if good(lo) and good(hi) else "**missed**" if not good(lo) and not good(hi) else "within noise"
        op = "≤" if le else "≥"
        print(f"| {kind} {op} {bound}× | {label} | {len(v)} | {statistics.median(v):.3f} | {lo:.3f}–{hi:.3f} "
              f"| {sum(map(good, v))} of {len(v)} | {sense} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--meta", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--err", required=True)
    r.add_argument("--logdir")
    r.add_argument("--cpu-ticks", type=int)
    r.add_argument("--user-ticks", type=int)
    r.add_argument("--clk-tck", type=int, default=100)
    r.add_argument("--rc", type=int, default=0)
    # /proc/stat's steal and total jiffies before and after the run.
    r.add_argument("--host-ticks", type=int, nargs=4, metavar=("STEAL0", "TOTAL0", "STEAL1", "TOTAL1"))
    q = sub.add_parser("report")
    q.add_argument("--runs", required=True)
    q.add_argument("--machine")
    q.add_argument("--idle")
    q.add_argument("--ab")
    q.add_argument("--profile")
    o = sub.add_parser("pooled")
    o.add_argument("files", nargs="+")
    o.add_argument("--calm", action="store_true", help=f"only runs that lost less than {STEAL_HIGH:.0f}% to steal")
    a = p.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    elif a.cmd == "pooled":
        pooled(a)
    else:
        report(a)


if __name__ == "__main__":
    sys.exit(main())
