#!/usr/bin/env python3
"""--trace-json, checked: the recorder's scenarios against one stage's server
(and its client), each trace sound for the viewers and of the shape the
stage's model must give it.

    python3 tests/trace_test.py --build build 02          # one stage
    python3 tests/trace_test.py --build build --html 02   # its page, in headless chromium

Exit status 77 (ctest: skipped) when --html finds no chromium, unless CI is
set: then a missing browser is a failure.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trace"))
import record  # noqa: E402

failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def handlers_inside_work(events):
    """Handler spans that start while a work span runs -- on the loop's
    thread, or (01, no loop) on another thread than the work's."""
    works = record.spans(events, "work")
    loop = any(record.is_idle(s) for s in record.spans(events))
    return [s for s in record.spans(events, tid=0 if loop else None)
            if not record.is_idle(s) and s["name"] not in ("work", "on_frame")
            and any(w["ts"] < s["ts"] < w["ts"] + w["dur"] and (loop or w["tid"] != s["tid"])
                    for w in works)]


def instants(events, name):
    return [e for e in events if e.get("ph") == "i" and e["name"] == name]


def run(stage, scenario, build, out):
    path, events, clients = record.record(stage, scenario, build, out)
    bad = record.problems(events)
    check(not bad, f"{stage} {scenario}: the trace is sound" + (f" ({bad[0]})" if bad else ""))
    return events, clients


def test_stage(stage, build, out):
    loop = stage != "01"
    events, clients = run(stage, "chatty", build, out)
    check(len(instants(events, "accept")) == 2, f"{stage} chatty: two accepts")
    check(len([w for c in clients for w in c.waits]) == 20, f"{stage} chatty: every frame arrived")
    names = {e["name"] for e in record.spans(events)}
    check("on_frame" in names, f"{stage} chatty: a span per frame handled")
    check(any(e["ph"] == "C" and e["name"] == "queued in total" for e in events),
          f"{stage} chatty: the total queued, as a counter")
    if loop:
        check(any(record.is_idle(s) for s in record.spans(events, tid=0)),
              f"{stage} chatty: the loop's idle time, on the main thread")
        check({e["tid"] for e in record.spans(events) if not record.is_idle(e)} == {0},
              f"{stage} chatty: every handler on the one loop thread")
    if stage == "04":
        check(any(n.startswith("task ") for n in names), "04 chatty: a span per task step")

    events, _ = run(stage, "work", build, out)
    check(len(record.spans(events, "work")) == 6, f"{stage} work: six work spans")
    inside = handlers_inside_work(events)
    if loop:
        check(not inside, f"{stage} work: no read starts while the loop does a frame's work")
    else:
        check(bool(inside), "01 work: a thread reads while another one works")

    if stage in ("03", "04"):
        events, _ = run(stage, "offload", build, out)
        works = record.spans(events, "work")
        check(works and all(w["tid"] != 0 for w in works), f"{stage} offload: the work on pool threads")
        # While a frame's work runs on the pool, the loop is free: it waits
        # for I/O (and would serve anyone), where 02's loop cannot.
        idle = [s for s in record.spans(events, tid=0) if record.is_idle(s)]
        overlap = max((min(w["ts"] + w["dur"], i["ts"] + i["dur"]) - max(w["ts"], i["ts"])
                       for w in works for i in idle), default=0)
        check(overlap > 1000, f"{stage} offload: the loop waits for I/O while a frame's work runs "
                              f"({overlap / 1000:.1f} ms at most)")

    events, _ = run(stage, "stall", build, out)
    closes = [e["args"].get("reason", "") for e in instants(events, "close")]
    if loop:
        check(bool(instants(events, "pause")) and bool(instants(events, "resume")),
              f"{stage} stall: the sender paused, then resumed")
        check(any("stalled" in r for r in closes), f"{stage} stall: the staller cut, and why")
        peak = max((e["args"]["bytes"] for e in events
                    if e.get("ph") == "C" and e["name"] == "queued in total"), default=0)
        check(peak >= 65536, f"{stage} stall: the queue reached the mark ({peak} bytes)")
    else:
        longest = max((s["dur"] for s in record.spans(events, "on_readable")), default=0)
        check(longest >= 500_000, f"01 stall: the sender's thread blocked in send() ({longest / 1e6:.2f} s)")

    events, clients = run(stage, "crowd", build, out)
    check(len(instants(events, "accept")) == 200, f"{stage} crowd: 200 accepts")
    check(len([w for c in clients for w in c.waits]) == 200, f"{stage} crowd: 200 echoes back")

    # A file that cannot be written is a usage error, said at once (status 2).
    for program in ("server", "client"):
        bad = subprocess.run([str(build / record.STAGES[stage] / program), "--port", "1",
                              "--trace-json", str(out / "no-such-folder" / "t.json")],
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        check(bad.returncode == 2 and "--trace-json" in bad.stderr,
              f"{stage} {program}: --trace-json into a missing folder is a usage error")

    # The stage's own client records too, on the same clock.
    stage_dir = record.STAGES[stage]
    server_json, client_json = out / f"{stage}-server.json", out / f"{stage}-client.json"
    server = subprocess.Popen([str(build / stage_dir / "server"), "--port", "0", "--echo",
                               "--trace-json", str(server_json)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = server.stdout.readline().rsplit(":", 1)[1].strip()
    subprocess.run([str(build / stage_dir / "client"), "--port", port, "--trace-json", str(client_json)],
                   input="hello\n", capture_output=True, text=True, timeout=30, check=True)
    server.terminate()
    server.communicate(timeout=15)
    client = record.load(client_json)
    check(not record.problems(client), f"{stage} client: its trace is sound")
    connect = instants(client, "connect")
    accept = instants(record.load(server_json), "accept")
    check(len(connect) == 1 and len(accept) == 1 and connect[0]["args"]["conn"] == accept[0]["args"]["peer"],
          f"{stage} client: its connect names the connection the server's accept does")


def test_html(stage, build, out):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        if os.environ.get("CI"):
            check(False, "chromium is needed to render the timeline (CI is set)")
            return
        print("skipped: no chromium to render the timeline in (apt-get install chromium)")
        sys.exit(77)
    path, events, clients = record.record(stage, "work", build, out)
    page = path.with_suffix(".html")
    record.write_html(page, events, path.stem, record.summary(events, clients))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    tracks = re.search(r'data-tracks="(\d+)"', dom)
    drawn = re.search(r'data-drawn="(\d+)"', dom)
    labels = re.findall(r'class="track-label"[^>]*>([^<]*)<', dom)
    threads = {(e["pid"], e["tid"]) for e in events if e.get("ph") in ("X", "i")}
    check(tracks is not None and int(tracks[1]) == len(threads) + 1,
          f"{stage} page: a row per thread and one for the queue ({tracks[1] if tracks else 'none'})")
    check(drawn is not None and int(drawn[1]) >= len(record.spans(events)),
          f"{stage} page: every span drawn ({drawn[1] if drawn else 'none'})")
    check(len(labels) == len(threads) + 1 and all(l.strip() for l in labels),
          f"{stage} page: every row labelled ({labels})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=list(record.STAGES))
    parser.add_argument("--build", required=True)
    parser.add_argument("--html", action="store_true")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (test_html if a.html else test_stage)(a.stage, Path(a.build), Path(tmp))
    if failures:
        print(f"{len(failures)} failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
