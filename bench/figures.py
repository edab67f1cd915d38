#!/usr/bin/env python3
"""Every measured figure the documents quote comes from the benchmark's
results, through this file -- and a check that they still say what the
results say.

A sentence stays hand-written; the number inside it is a placeholder that
names a figure, and this script writes the figure's text between the markers:

    03 holds an idle connection in <!-- fig: idle.03_libuv -->518 B<!-- /fig -->.

Inside an HTML comment -- the decks' speaker notes are comments, and a
comment cannot hold another -- the same placeholder is written

    03 holds an idle connection in [518 B]{fig:idle.03_libuv}.

A table (or any longer generated text) is a block:

    <!-- fig-block: goals -->
    ...the goal table...
    <!-- /fig-block -->

And a section whose every measured figure must be generated is marked

    <!-- measured -->  ...prose with placeholders...  <!-- /measured -->

(or, inside a comment, {measured} ... {/measured}),
inside which a number with a unit typed by hand ("12.1 us", "0.53x",
"471 B") is an error: put it in a placeholder, or, if it is a fact from
elsewhere (FD_SETSIZE is 1024), move it out of the section.

    python3 bench/figures.py            # check every document: exit 1 on drift
    python3 bench/figures.py --update   # rewrite every figure from the results
    python3 bench/figures.py --list     # every figure's name and text

The figures come from bench/results/raw.json (the full run; a quick run has
its own folder and feeds no document). The decks get the same figures
typeset for a slide (12.1 µs, 0.99×, 3.5–5.2 MiB), the Spanish deck with a
decimal comma and no thousands separator (12,1 µs, 19000). `./workshop bench` and `--report` run
--update; `./workshop test` runs the check.
"""
import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results/raw.json"
REFERENCE = "03_libuv"
OURS = ["01_threads", "02_select", "03_libuv", "04_coro"]
# The documents that quote measurements.
DOCUMENTS = ["README.md", "01_blocking/README.md", "02_select/README.md", "03_libuv_callbacks/README.md",
             "04_coroutines/README.md", "epilogue/README.md", "bench/README.md", "slides/talk.en.md",
             "slides/talk.es.md"]

FIG = re.compile(r"<!-- fig: (?P<name>[\w.\-]+) -->(?P<text>.*?)<!-- /fig -->", re.S)
NOTE_FIG = re.compile(r"\[(?P<text>[^\]\n]*)\]\{fig:(?P<name>[\w.\-]+)\}")
BLOCK = re.compile(r"<!-- fig-block: (?P<name>[\w.\-]+) -->\n(?P<text>.*?)<!-- /fig-block -->", re.S)
MEASURED = re.compile(r"(?:<!-- measured -->|\{measured\})(?P<body>.*?)(?:<!-- /measured -->|\{/measured\})",
                      re.S)
# What a measured figure looks like when typed by hand: a number and a unit.
TYPED = re.compile(r"(?<![\w.])\d[\d.,]*\s?(?:x\b|×|%|us\b|µs|ms\b|s\b|MB/s|MiB|KiB|GiB|B\b|bytes\b|"
                   r"msgs/s|k\b|M\b)")


# ---------------------------------------------------------------------------
# Formatting


def number(v, digits=0):
    return f"{v:,.{digits}f}"


def size(nbytes):
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.1f} MiB"
    if nbytes >= 10 * 2**10:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes:,.0f} B"


def rate(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"


def span(values, fmt):
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def mib_span(values_kib):
    """Peak RSS of several servers: 3.5-5.2 MiB, or 1.0-2.0 GiB past a GiB."""
    if max(values_kib) >= 2**20:
        return span(values_kib, lambda v: f"{v / 2**20:.1f}") + " GiB"
    return span(values_kib, lambda v: f"{v / 2**10:.1f}") + " MiB"


def ratio_of(text):
    """The number in a ratio figure: "1.05x" -> 1.05."""
    return float(text[:-1])


def spanish(text):
    """1,234.5 -> 1234,5: the decimal comma and no thousands separator, as the
    decks' Spanish text and charts write numbers (19000 conexiones, 2048,5 MiB)."""
    return re.sub(r"\d[\d,]*\.?\d*", lambda m: m[0].replace(",", "").replace(".", ","), text)


def typeset(text):
    """A deck's typography: µs, a multiplication sign, an en dash in a range
    (the slides' browser test rejects "us" for microseconds)."""
    text = re.sub(r"(\d) us\b", r"\1 µs", text)
    text = re.sub(r"(\d)x\b", r"\1×", text)
    return re.sub(r"(\d[kM]?)-(\d)", r"\1–\2", text)


# ---------------------------------------------------------------------------
# The figures


def load(path=RESULTS):
    data = json.loads(path.read_text())
    data["echo"] = {tuple(k): v for k, v in data["echo"]}
    data["fanout"] = {tuple(k): v for k, v in data["fanout"]}
    data["cpu_bound"] = {tuple(k): v for k, v in data.get("cpu_bound") or []}
    return data


def med(results, key):
    ok = [r[key] for r in results if r.get("ok") and key in r]
    return statistics.median(ok) if ok and len(ok) == len(results) else None


def rounds(results, key):
    """Every round's value, or None unless every round succeeded."""
    ok = [r[key] for r in results if r.get("ok") and key in r]
    return ok if ok and len(ok) == len(results) else None


# Servers quoted together: our stages, the event loops among them, and the
# peers that queue without bound for a client that never reads.
GROUPS = {"ours": OURS, "loops": ["02_select", "03_libuv", "04_coro"], "offload": ["03_offload", "04_offload"],
          "node-python": ["node", "asyncio", "uvloop"], "all": None}
# Echo rates are also given as a fraction of these servers' (the floor, and peers).
VERSUS = ["raw_epoll", "node", "asio", "asyncio"]


def idle_bytes(capacity, name):
    steps = (capacity.get(name) or {}).get("steps", [])
    if len(steps) < 2:
        return None, None
    first, last = steps[0], steps[-1]
    per = (last["rss_kb"] - first["rss_kb"]) * 1024 / max(1, last["connections"] - first["connections"])
    return per, last["connections"]


def slow_ratio(alone, stalled):
    """The reader's speed after the stalled client was cut, against its speed
    before that client joined in the same run (older results: against a
    separate run alone)."""
    after = stalled.get("mb_per_s_after_wait", stalled["mb_per_s"])
    before = stalled.get("mb_per_s_before") or alone["mb_per_s"]
    return after / before


def slow_cpu_ratio(stalled):
    """The server's CPU time per MB after the cut, against before it."""
    before, after = stalled.get("cpu_us_per_mb_before"), stalled.get("cpu_us_per_mb_after")
    return after / before if before and after else None


def figures(raw):
    """name -> text, for every figure a document may quote."""
    f = {}
    m = raw["machine"]
    f["run.date"] = m["date"]
    f["run.machine"] = f"{m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB"
    f["run.rounds"] = str(raw["rounds"])

    names = raw["names"]
    echo, cases = raw["echo"], [tuple(c) for c in raw["echo_cases"]]
    for name in names:
        for c, s in cases:
            key = f"{name}.{c}x{s}"
            rate_ = med(echo.get((name, c, s), []), "msgs_per_s")
            if rate_:
                f[f"echo.{key}"] = rate(rate_)
            cpu = med(echo.get((name, c, s), []), "cpu_us_per_msg")
            ref = med(echo.get((REFERENCE, c, s), []), "cpu_us_per_msg")
            if cpu:
                f[f"cpu.{key}"] = f"{cpu:.1f} us"
            if cpu and ref:
                f[f"cpu-ratio.{key}"] = f"{cpu / ref:.2f}x"
            if rate_ and (r := med(echo.get((REFERENCE, c, s), []), "msgs_per_s")):
                f[f"echo-ratio.{key}"] = f"{rate_ / r:.2f}x"
            # The spread between rounds: min-max of the rounds, for a noisy figure.
            if (values := rounds(echo.get((name, c, s), []), "msgs_per_s")) and len(values) > 1:
                f[f"echo-rounds.{key}"] = span(values, rate)
            if (values := rounds(echo.get((name, c, s), []), "cpu_us_per_msg")) and len(values) > 1:
                f[f"cpu-rounds.{key}"] = span(values, lambda v: f"{v:.1f}") + " us"
            for peer in VERSUS:
                if peer != name and rate_ and (r := med(echo.get((peer, c, s), []), "msgs_per_s")):
                    f[f"echo-vs-{peer}.{key}"] = f"{rate_ / r:.2f}x"
        ratios = [float(f[f"cpu-ratio.{name}.{c}x{s}"][:-1]) for c, s in cases if f"cpu-ratio.{name}.{c}x{s}" in f]
        if ratios:
            f[f"cpu-ratio.{name}.range"] = span(ratios, lambda v: f"{v:.2f}") + "x"
        ratios = [float(f[f"echo-ratio.{name}.{c}x{s}"][:-1]) for c, s in cases
                  if f"echo-ratio.{name}.{c}x{s}" in f]
        if ratios:
            f[f"echo-ratio.{name}.range"] = span(ratios, lambda v: f"{v:.2f}") + "x"

    # A round that failed because connections got no reply within the window:
    # what share of them, over every such round of a server.
    for name in names:
        shares = [int(m[1]) / int(m[2]) for results in (v for k, v in echo.items() if k[0] == name)
                  for r in results if not r.get("ok")
                  and (m := re.match(r"(\d+) of (\d+) connections got no reply", r.get("error", "")))]
        if shares:
            f[f"echo-unanswered.{name}"] = span(shares, lambda v: f"{100 * v:.0f}") + "%"

    # How far apart the rounds of one echo point are: (max - min) / median, over every point.
    spreads = []
    for results in echo.values():
        values = rounds(results, "msgs_per_s")
        if values and len(values) > 1:
            spreads.append((max(values) - min(values)) / statistics.median(values))
    if spreads:
        f["echo-spread.median"] = f"{100 * statistics.median(spreads):.0f}%"
        f["echo-spread.max"] = f"{100 * max(spreads):.0f}%"

    for (name, n), results in raw["fanout"].items():
        d = med(results, "deliveries_per_s")
        if d:
            f[f"fanout.{name}.{n}"] = rate(d)
            f[f"fanout-p99.{name}.{n}"] = f"{med(results, 'p99_us'):,.0f} us"
    for n in raw.get("fanout_cases", []):
        rates = [d for name in names if (d := med(raw["fanout"].get((name, n), []), "deliveries_per_s"))]
        if rates:
            f[f"fanout.all.{n}"] = span(rates, rate)
            f[f"fanout-spread.{n}"] = f"{max(rates) / min(rates):.2f}x"

    for name in names:
        per, held = idle_bytes(raw["capacity"], name)
        if per is not None:
            f[f"idle.{name}"] = size(per)
            f[f"idle.{name}.held"] = number(held)
            f[f"idle.{name}.threads"] = number(raw["capacity"][name]["steps"][-1]["threads"])
    a, _ = idle_bytes(raw["capacity"], "04_coro")
    b, _ = idle_bytes(raw["capacity"], REFERENCE)
    if a and b:
        f["idle-ratio.04_coro"] = f"{a / b:.1f}x"

    for name, r in raw["slow"].items():
        for frame in ("", "1"):  # 64 KiB frames, and 1-byte frames (key "alone1"/"stalled1")
            alone, stalled = r.get("alone" + frame, {}), r.get("stalled" + frame, {})
            if not (alone.get("ok") and stalled.get("ok")):
                continue
            key = f"slow{frame}.{name}"
            after = stalled.get("mb_per_s_after_wait", stalled["mb_per_s"])
            f[f"{key}.alone"] = f"{alone['mb_per_s']:,.0f} MB/s"
            f[f"{key}.after"] = f"{after:,.0f} MB/s"
            f[f"{key}.ratio"] = f"{slow_ratio(alone, stalled):.2f}x"
            if stalled.get("mb_per_s_before"):
                f[f"{key}.before"] = f"{stalled['mb_per_s_before']:,.0f} MB/s"
            if slow_cpu_ratio(stalled):
                f[f"{key}.cpu-ratio"] = f"{slow_cpu_ratio(stalled):.2f}x"
            f[f"{key}.wait"] = f"{stalled['longest_wait_s']:.1f} s"
            f[f"{key}.peak"] = size(stalled["peak_rss_kb"] * 1024)
            # The ratio in every round (one server's speed varies from one start to the next).
            ratios = [slow_ratio(p["alone"], p["stalled"]) for p in (r.get("rounds") or []) if not frame and p["alone"].get("ok") and p["stalled"].get("ok")]
            if len(ratios) > 1:
                f[f"{key}.ratio-rounds"] = span(ratios, lambda v: f"{v:.2f}") + "x"
            cpu = [slow_cpu_ratio(p["stalled"]) for p in (r.get("rounds") or []) if not frame
                   and p["stalled"].get("ok") and slow_cpu_ratio(p["stalled"])]
            if len(cpu) > 1:
                f[f"{key}.cpu-ratio-rounds"] = span(cpu, lambda v: f"{v:.2f}") + "x"
            alones = [p["alone"]["mb_per_s"] for p in (r.get("rounds") or []) if not frame and p["alone"].get("ok")]
            if len(alones) > 1:
                f[f"{key}.alone-rounds"] = span(alones, lambda v: f"{v:,.0f}") + " MB/s"
    for frame in ("", "1"):
        for group in ("ours", "node-python"):
            runs = [(raw["slow"][n]["alone" + frame], raw["slow"][n]["stalled" + frame]) for n in GROUPS[group]
                    if raw["slow"].get(n, {}).get("stalled" + frame, {}).get("ok")
                    and raw["slow"][n].get("alone" + frame, {}).get("ok")]
            if not runs:
                continue
            key = f"slow{frame}.{group}"
            f[f"{key}.peak"] = mib_span([s["peak_rss_kb"] for _, s in runs])
            f[f"{key}.ratio"] = span([slow_ratio(a, s) for a, s in runs],
                                     lambda v: f"{v:.2f}") + "x"
            f[f"{key}.wait"] = span([s["longest_wait_s"] for _, s in runs], lambda v: f"{v:.1f}") + " s"

    for (config, cores), r in raw["cpu_bound"].items():
        if r.get("ok"):
            f[f"work.{config}.{cores}core.p50"] = f"{r['p50_ms']:.1f} ms"
            f[f"work.{config}.{cores}core.p99"] = f"{r['p99_ms']:.1f} ms"
            f[f"work.{config}.{cores}core.heavy"] = f"{r['heavy_per_s']:,.0f} frames/s"
    for group in ("loops", "offload"):
        for cores in (1, 2):
            got = [raw["cpu_bound"][(c, cores)] for c in GROUPS[group] if raw["cpu_bound"].get((c, cores), {}).get("ok")]
            if got:
                for p in ("p50", "p99"):
                    f[f"work.{group}.{cores}core.{p}"] = span([r[f"{p}_ms"] for r in got], lambda v: f"{v:.1f}") + " ms"

    # What --trace-json costs: CPU per echo message on against off, and off
    # against a build without it, per round.
    written = []
    for kind, mine, base in (("trace-cost", "on", "off"), ("trace-off", "off", "none")):
        medians = []
        for name, modes in (raw.get("trace_cost") or {}).items():
            pairs = [(m["cpu_us_per_msg"], b["cpu_us_per_msg"]) for m, b in zip(modes.get(mine, []), modes.get(base, []))
                     if m.get("cpu_us_per_msg") and b.get("cpu_us_per_msg")]
            if pairs:
                m = statistics.median(a / b for a, b in pairs)
                medians.append(m)
                f[f"{kind}.{name}"] = f"{m:.2f}x"
                f[f"{kind}.{name}.rounds"] = span([a / b for a, b in pairs], lambda v: f"{v:.2f}") + "x"
        if medians:
            f[f"{kind}.range"] = span(medians, lambda v: f"{v:.2f}") + "x"
    for modes in (raw.get("trace_cost") or {}).values():
        written += [r["trace_bytes_per_msg"] for r in modes.get("on", []) if r.get("trace_bytes_per_msg")]
    if written:
        f["trace-cost.bytes"] = span(written, lambda v: f"{v:,.0f}") + " B"

    # The epilogue's one loop per core: --work throughput and the relay's CPU
    # per delivery, with 1 and 2 loops, and 2 against 1 per round.
    multiloop = raw.get("multiloop") or {}
    for kind, key, unit in (("work", "msgs_per_s", lambda v: f"{v:,.0f} frames/s"),
                            ("relay", "cpu_us_per_delivery", lambda v: f"{v:.2f} us")):
        runs = multiloop.get(kind) or {}
        for loops in ("1", "2"):
            values = [r[key] for r in runs.get(loops, []) if r.get("ok") and r.get(key)]
            if values:
                f[f"multiloop.{kind}.{loops}"] = unit(statistics.median(values))
        pairs = [(two[key], one[key]) for one, two in zip(runs.get("1", []), runs.get("2", []))
                 if one.get(key) and two.get(key)]
        if pairs:
            f[f"multiloop.{kind}.ratio"] = f"{statistics.median(a / b for a, b in pairs):.2f}x"
            f[f"multiloop.{kind}.ratio.rounds"] = span([a / b for a, b in pairs], lambda v: f"{v:.2f}") + "x"

    # The epilogue's completion (io_uring) against readiness: CPU and system
    # calls per echo message.
    completion = raw.get("completion") or {}
    base = (completion.get("cpu") or {}).get("03_libuv", [])
    for name, runs in (completion.get("cpu") or {}).items():
        values = [r["cpu_us_per_msg"] for r in runs if r.get("cpu_us_per_msg")]
        if values:
            f[f"completion.cpu.{name}"] = f"{statistics.median(values):.2f} us"
        ratios = [m["cpu_us_per_msg"] / b["cpu_us_per_msg"] for m, b in zip(runs, base)
                  if m.get("cpu_us_per_msg") and b.get("cpu_us_per_msg")]
        if ratios and name != "03_libuv":
            f[f"completion.ratio.{name}"] = f"{statistics.median(ratios):.2f}x"
            f[f"completion.ratio.{name}.rounds"] = span(ratios, lambda v: f"{v:.2f}") + "x"
    for name, calls in (completion.get("syscalls") or {}).items():
        if calls:
            f[f"completion.syscalls.{name}"] = f"{sum(calls.values()):.2f}"
            for call in ("io_uring_enter", "epoll_wait", "read", "write", "epoll_ctl"):
                f[f"completion.syscalls.{name}.{call}"] = f"{calls.get(call, 0):.2f}"

    # What an idle connection holds, block by block (the census workload).
    for name, c in (raw.get("census") or {}).items():
        if not isinstance(c, dict) or not c.get("blocks"):
            continue
        sizes = [size for size, _ in c["blocks"]]
        f[f"census.{name}.blocks"] = " + ".join(f"{v:,}" for v in sizes)
        f[f"census.{name}.count"] = f"{len(sizes)}"
        f[f"census.{name}.largest"] = f"{sizes[0]:,} B"
        f[f"census.{name}.total"] = f"{sum(size * n for size, n in c['blocks']) / c['connections']:,.0f} B"

    # The epilogue's c100k, and c1M on paper from the same readings.
    c = raw.get("c100k") or {}
    if c.get("ok"):
        n = c["held"]
        before, after = c["kernel_before"], c["kernel_after"]
        server = (c["server_rss_kb"][1] - c["server_rss_kb"][0]) * 1024 / n
        kernel = (after["slab_kb"] - before["slab_kb"]) * 1024 / n  # both ends: two sockets
        buffers = (after["tcp_mem_pages"] - before["tcp_mem_pages"]) * 4096 / n
        f["c100k.held"] = f"{n:,}"
        f["c100k.processes"] = f"{c['processes']}"
        f["c100k.per-server"] = span(c["per_server_descriptors"], lambda v: f"{v:,}")
        f["c100k.sockets"] = f"{after['tcp_alloc'] - before['tcp_alloc']:,}"
        f["c100k.server"] = f"{server:,.0f} B"
        f["c100k.kernel"] = f"{kernel / 1024:,.1f} KiB"
        f["c100k.kernel-socket"] = f"{kernel / 2 / 1024:,.1f} KiB"
        f["c100k.buffers"] = f"{buffers:,.0f} B"
        f["c100k.sample"] = f"{c['answered']} of {c['sampled']}"
        f["c100k.slowest"] = f"{c['slowest_ms']:.1f} ms"
        f["c100k.connect"] = f"{c['seconds_to_connect']:.0f} s"
        # c1M: a server holds its end (server memory + one socket); this
        # machine, with its load generator, holds both ends.
        million = 1_000_000
        limits = c["limits"]
        ports = limits["port_range"][1] - limits["port_range"][0] + 1
        server_end = million * (server + kernel / 2 + buffers / 2)
        both_ends = million * (server + kernel + buffers)
        memtotal = after["memtotal_kb"] * 1024
        f["c1m.server-end"] = f"{server_end / 2**30:.1f} GiB"
        f["c1m.both-ends"] = f"{both_ends / 2**30:.1f} GiB"
        f["c1m.memtotal"] = f"{memtotal / 2**30:.1f} GiB"
        f["c1m.processes"] = f"{-(-million // limits['descriptors']):,}"
        f["c1m.ports"] = f"{ports:,}"
        f["c1m.addresses"] = f"{-(-million // ports):,}"
        f["c1m.file-max"] = f"{limits['file_max']:,}"
        walls = {f"memory ({both_ends / 2**30:.1f} of {memtotal / 2**30:.1f} GiB)": both_ends / memtotal,
                 f"the system-wide descriptor limit ({2 * million:,} of fs.file-max {limits['file_max']:,})":
                     2 * million / limits["file_max"]}
        first = max(walls, key=walls.get)
        f["c1m.first-wall"] = f"{first}, {walls[first] * 100:.0f}% of it"
        f["c1m.first-wall.short"] = "memory" if first.startswith("memory") else "fs.file-max"

    f["goals"] = goal_table(raw, f)
    return f


# The goals, computed: (goal, how it is measured, test on the figures).
def goal_table(raw, f):
    rows = []

    def row(goal, measured, met):
        verdict = "--" if raw.get("quick") else ("met" if met else "missed")
        rows.append(f"| {goal} | {measured} | {verdict} |")

    cases = [tuple(c) for c in raw["echo_cases"]]

    def versus(name, peer, only=lambda c, s: True):
        """name's echo rate over peer's, at every case both have (and `only` allows)."""
        return [ratio_of(f[k]) for c, s in cases if only(c, s)
                and (k := f"echo-vs-{peer}.{name}.{c}x{s}" if peer != REFERENCE else f"echo-ratio.{name}.{c}x{s}") in f]

    def ratios(values):
        return span(values, lambda v: f"{v:.2f}") + "x"

    # 04 as fast as 03: at least 0.95x its echo rate at every point.
    if got := versus("04_coro", REFERENCE):
        row("04's echo throughput at least 0.95x 03's, at every point", ratios(got), min(got) >= 0.95)
    # 03 and 04 against the peers people would reach for.
    for peer, label, goal in (("node", "Node.js's", 2.0), ("asio", "Asio's", 1.0)):
        got = {name: versus(name, peer) for name in ("03_libuv", "04_coro")}
        if all(got.values()):
            row(f"03's and 04's echo throughput at least {goal:.1f}x {label}, at every point both ran",
                "; ".join(f"{name[:2]}: {ratios(v)}" for name, v in got.items()),
                all(min(v) >= goal for v in got.values()))
    # The floor: a minimal epoll echo, at 100 connections.
    got = {name: versus(name, "raw_epoll", lambda c, s: c == 100) for name in ("03_libuv", "04_coro")}
    if all(got.values()):
        row("03 and 04 within 80% of the raw epoll floor's echo throughput at 100 connections",
            "; ".join(f"{name[:2]}: {ratios(v)}" for name, v in got.items()),
            all(min(v) >= 0.8 for v in got.values()))
    # 04 as cheap as 03: CPU per echo message within 3% at 10, 100, 1000 connections (64 B).
    pts = [(c, f.get(f"cpu-ratio.04_coro.{c}x64")) for c in (10, 100, 1000)]
    pts = [(c, float(v[:-1])) for c, v in pts if v]
    if pts:
        row("04's server CPU per echo message within 3% of 03's (64 B; 10, 100, 1000 connections)",
            ", ".join(f"{c}: {v:.2f}x" for c, v in pts), all(v <= 1.03 for _, v in pts))
    for name, goal, label in (("03_libuv", 1024, "1 KiB"), ("04_coro", 1024, "1 KiB")):
        per, held = idle_bytes(raw["capacity"], name)
        if per is not None:
            row(f"{name}: under {label} of server memory per idle connection",
                f"{size(per)} at {held:,} connections", per < goal)
    # Tracing off costs nothing that shows: within the rounds' noise of a
    # build without it (CPU per echo message, 100 x 64 B).
    got = {name: ratio_of(f[k]) for name in ("02_select", "03_libuv", "04_coro")
           if (k := f"trace-off.{name}") in f}
    if got:
        row("--trace-json built in but off: server CPU per echo message within 5% of a build without it",
            ", ".join(f"{name[:2]}: {v:.2f}x" for name, v in got.items()), all(v <= 1.05 for v in got.values()))
    for name in OURS:
        if f"slow.{name}.ratio" in f:
            ratio = float(f[f"slow.{name}.ratio"][:-1])
            peak = raw["slow"][name]["stalled"]["peak_rss_kb"] / 1024
            row(f"{name}: a stalled receiver costs under 64 MiB, and the reader gets back 0.9x of its speed",
                f"{f[f'slow.{name}.peak']}, {f[f'slow.{name}.ratio']}", peak < 64 and ratio >= 0.9)
        if f"slow1.{name}.peak" in f:
            peak = raw["slow"][name]["stalled1"]["peak_rss_kb"] / 1024
            row(f"{name}: the same with 1-byte frames, under 64 MiB", f[f"slow1.{name}.peak"], peak < 64)
    return "| goal | measured | verdict |\n|---|---|---|\n" + "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------
# Documents


def render(text, figs, spanish_numbers, deck=False):
    """The document with every placeholder's text as the figures say (in a
    deck, typeset for a slide: µs, ×, an en dash)."""
    missing = []

    def value(name):
        if name not in figs:
            missing.append(name)
            return None
        v = typeset(figs[name]) if deck else figs[name]
        return spanish(v) if spanish_numbers else v

    def fig(m):
        v = value(m["name"])
        return m[0] if v is None else f"<!-- fig: {m['name']} -->{v}<!-- /fig -->"

    def note_fig(m):
        v = value(m["name"])
        return m[0] if v is None else f"[{v}]{{fig:{m['name']}}}"

    def block(m):
        v = value(m["name"])
        return m[0] if v is None else f"<!-- fig-block: {m['name']} -->\n{v}<!-- /fig-block -->"

    return BLOCK.sub(block, NOTE_FIG.sub(note_fig, FIG.sub(fig, text))), missing


def typed_by_hand(text):
    """Measured-looking figures in a measured section, outside placeholders."""
    found = []
    for section in MEASURED.finditer(text):
        body = BLOCK.sub("", NOTE_FIG.sub("", FIG.sub("", section["body"])))
        body = re.sub(r"`[^`]*`", "", body)  # commands and code: `--work 1000`, `-j2`
        found += [m[0] for m in TYPED.finditer(body)]
    return found


def plain(text):
    """The document as a reader sees it: the figures' text without their
    markers (for a renderer, like Marp, that would keep the markers: it turns
    every HTML comment on a slide into a presenter note)."""
    text = re.sub(r"^[ \t]*(?:<!-- /?measured -->|\{/?measured\})[ \t]*\n", "", text, flags=re.M)
    text = re.sub(r"<!-- /?measured -->|\{/?measured\}", "", text)
    text = BLOCK.sub(lambda m: m["text"], text)
    text = FIG.sub(lambda m: m["text"], text)
    return NOTE_FIG.sub(lambda m: m["text"], text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite every figure from the results")
    parser.add_argument("--list", action="store_true", help="print every figure's name and text")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--plain", metavar="FILE", help="print FILE without the figures' markers")
    args = parser.parse_args()
    if args.plain:
        sys.stdout.write(plain(Path(args.plain).read_text()))
        return 0
    figs = figures(load(Path(args.results)))
    if args.list:
        for name, text in figs.items():
            print(f"{name}: {text}" if "\n" not in text else f"{name}:\n{text}")
        return 0
    problems = []
    for doc in DOCUMENTS:
        path = ROOT / doc
        text = path.read_text()
        new, missing = render(text, figs, spanish_numbers=doc.endswith(".es.md"), deck=doc.startswith("slides/"))
        problems += [f"{doc}: no figure named '{name}' in the results" for name in missing]
        problems += [f"{doc}: '{t.strip()}' typed by hand in a measured section (use a placeholder)"
                     for t in typed_by_hand(new)]
        if new != text:
            if args.update:
                path.write_text(new)
                print(f"figures: rewrote {doc}")
            else:
                stale = [m["name"] for m, n in zip(FIG.finditer(text), FIG.finditer(new)) if m[0] != n[0]]
                stale += [m["name"] for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(new)) if m[0] != n[0]]
                stale += [m["name"] for m, n in zip(NOTE_FIG.finditer(text), NOTE_FIG.finditer(new))
                          if m[0] != n[0]]
                problems += [f"{doc}: figure '{name}' differs from the results" for name in stale]
    for p in problems:
        print(p)
    if problems:
        print("figures: run `python3 bench/figures.py --update` after a benchmark, or fix the placeholder "
              "(`--list` shows every figure)")
        return 1
    print(f"figures: every measured figure in {len(DOCUMENTS)} documents matches {Path(args.results).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
