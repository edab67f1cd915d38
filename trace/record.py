#!/usr/bin/env python3
"""Record what a server's loop did in a scenario, and draw it.

    ./workshop trace STAGE [SCENARIO]
    python3 trace/record.py STAGE [SCENARIO] [--build DIR] [--out DIR]

STAGE is 01, 02, 03 or 04 (the server built in build/<stage>/), or the path
of any server that speaks the protocol and takes --port 0 and
--trace-json FILE -- yours, with an exercise's answer in, say.

SCENARIO (default: chatty) is one of:
  chatty   two clients chat: ten small frames each, 10 ms apart
  work     the same with a CPU-heavy handler (--work 20000: 20 ms a frame)
  offload  the same with --offload (03 and 04: the work goes to a thread pool)
  stall    one sender, one reader, and one receiver that never reads: the
           sender is paused (backpressure), then the staller is cut
  crowd    200 clients connect at once, each echoes one frame

It writes OUT/<stage>-<scenario>.json -- the Chrome trace format, which
https://ui.perfetto.dev and chrome://tracing open -- and .html beside it, a
page of our own that opens from the file with no network. Then it prints where
they are and a summary: how busy the loop was, the longest handler, and the
longest a client waited for a frame.
"""
import argparse
import html
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"01": "01_blocking", "02": "02_select", "03": "03_libuv_callbacks", "04": "04_coroutines"}
SCENARIOS = ["chatty", "work", "offload", "stall", "crowd"]


# ---------------------------------------------------------------------------
# Clients: Python sockets, so that a scenario controls exactly when each byte
# goes. Every payload starts with its send time (the monotonic clock, the one
# the server's trace uses), so a receiver knows how long each frame took.

def payload(size=64):
    stamp = struct.pack(">Q", time.monotonic_ns())
    return stamp + b"x" * max(0, size - len(stamp))


class Client:
    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect(): the window is agreed on then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.waits = []  # seconds from a frame's sending to its arrival here

    def send(self, data):
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def receive(self, count, timeout=20.0):
        """Reads `count` frames (fewer if the server closes or time runs out)."""
        self.sock.settimeout(timeout)
        buffer = b""
        got = 0
        try:
            while got < count:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 4:
                    (n,) = struct.unpack(">I", buffer[:4])
                    if len(buffer) < 4 + n:
                        break
                    body, buffer = buffer[4:4 + n], buffer[4 + n:]
                    if len(body) >= 8:
                        sent = struct.unpack(">Q", body[:8])[0]
                        self.waits.append((time.monotonic_ns() - sent) / 1e9)
                    got += 1
        except OSError:
            pass
        return got

    def close(self):
        self.sock.close()


def in_threads(*functions):
    threads = [threading.Thread(target=f) for f in functions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def chat(port, log, frames, gap, stagger, clients=2):
    """Each client sends `frames` frames, `gap` seconds apart, client i
    `stagger` * i seconds after client 0; each reads everyone else's."""
    cs = [Client(port) for _ in range(clients)]
    log.accepted(clients)

    def talker(i):
        def run():
            time.sleep(stagger * i)
            for _ in range(frames):
                cs[i].send(payload())
                time.sleep(gap)
        return run

    def listener(i):
        return lambda: cs[i].receive(frames * (clients - 1))

    in_threads(*[talker(i) for i in range(clients)], *[listener(i) for i in range(clients)])
    for c in cs:
        c.close()
    return cs


def scenario_chatty(port, log):
    return chat(port, log, frames=10, gap=0.010, stagger=0.005)


def scenario_work(port, log):
    # 20 ms of work per frame, a frame every 40 ms from each client, the
    # second client's 10 ms after the first's: it comes in while the first
    # one's work runs, and a loop that does the work itself keeps it waiting.
    return chat(port, log, frames=3, gap=0.040, stagger=0.010)


def scenario_stall(port, log):
    sender, reader = Client(port), Client(port)
    staller = Client(port, rcvbuf=4096)  # never reads
    log.accepted(3)
    frames, size = 600, 16 * 1024

    def send():
        for _ in range(frames):
            sender.send(payload(size))

    in_threads(send, lambda: reader.receive(frames, timeout=30))
    for c in (sender, reader, staller):
        c.close()
    return [sender, reader, staller]


def scenario_crowd(port, log):
    count = 200
    ready = threading.Barrier(count)
    clients = [None] * count

    def one(i):
        def run():
            c = Client(port)
            clients[i] = c
            ready.wait()  # all connected: now they all talk at once
            c.send(payload())
            c.receive(1)
            c.close()
        return run

    in_threads(*[one(i) for i in range(count)])
    return clients


SCENARIO_RUNS = {
    "chatty": ([], scenario_chatty),
    "work": (["--work", "20000"], scenario_work),
    "offload": (["--work", "20000", "--offload"], scenario_work),
    "stall": (["--max-pending", "65536", "--stall-timeout", "1"], scenario_stall),
    "crowd": (["--echo"], scenario_crowd),
}


def server_command(stage, build):
    """The server's command line, and a short name for the files."""
    if stage in STAGES:
        cmd = [str(build / STAGES[stage] / "server")]
        if stage == "01":
            cmd += ["--mode", "threads"]  # iterative would serve one client at a time
        return cmd, stage
    path = Path(stage)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SystemExit(f"unknown stage '{stage}': use 01, 02, 03, 04 or the path of a server program")
    cmd = [str(path.resolve())]
    if path.resolve().parent.name == STAGES["01"]:
        cmd += ["--mode", "threads"]  # as for 01: iterative would serve one client at a time
    return cmd, path.parent.name or path.name


class ServerLog:
    """The server's stderr, read as it comes: a scenario waits for the
    server's "client N connected" lines before it talks, since a relay only
    reaches the clients the server has accepted (connect() returns before)."""

    def __init__(self, server):
        self.lines, self.ready = [], threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(server.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            with self.ready:
                self.lines.append(line)
                self.ready.notify_all()

    def accepted(self, count, timeout=10.0):
        """Waits until the server has logged `count` connections (a server of
        your own that logs none: for at most `timeout` seconds)."""
        with self.ready:
            self.ready.wait_for(lambda: sum(" connected from " in l for l in self.lines) >= count, timeout)

    def text(self):
        self.thread.join(timeout=10)
        with self.ready:
            return "".join(self.lines)


def record(stage, scenario, build, out, text=False):
    """Runs the scenario; returns (json path, events, the clients). With
    `text`, the server's --trace lines go to a .txt file beside the JSON."""
    cmd, name = server_command(stage, build)
    extra, run = SCENARIO_RUNS[scenario]
    if text:
        extra = extra + ["--trace"]
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}-{scenario}.json"
    server = subprocess.Popen(cmd + ["--port", "0", "--trace-json", str(json_path)] + extra,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on"):
        server.kill()
        _, err = server.communicate()
        raise SystemExit(f"{' '.join(cmd + extra)} did not start:\n{err.strip()}")
    port = int(line.rsplit(":", 1)[1])
    log = ServerLog(server)
    clients = run(port, log)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise SystemExit("the server did not stop within 15 s of SIGTERM")
    err = log.text()
    if server.returncode != 0:
        raise SystemExit(f"the server exited with status {server.returncode}:\n{err.strip()}")
    if text:
        lines = [l for l in err.splitlines() if l.startswith("[trace")]
        json_path.with_suffix(".txt").write_text("".join(l + "\n" for l in lines))
    return json_path, load(json_path), clients


def load(path):
    text = Path(path).read_text().rstrip()
    if not text.endswith("]"):  # the format allows a file cut short (a killed process)
        text = text.rstrip(",") + "]"
    return json.loads(text)


# ---------------------------------------------------------------------------
# What a trace must be, for the viewers and for us.

EPSILON = 0.002  # us: ts and dur are written to the nanosecond, each rounded


def problems(events):
    """Everything wrong with a trace: missing fields, spans that overlap on one
    track without nesting, negative counters. Empty if it is sound."""
    found = []
    tracks = {}
    for i, e in enumerate(events):
        for field in ("ph", "name", "pid", "tid"):
            if field not in e:
                found.append(f"event {i} has no {field}: {e}")
        ph = e.get("ph")
        if ph not in ("X", "i", "C", "M"):
            found.append(f"event {i} has an unknown ph {ph!r}")
            continue
        if ph != "M" and not isinstance(e.get("ts"), (int, float)):
            found.append(f"event {i} has no ts: {e}")
            continue
        if not isinstance(e.get("args", {}), dict):
            found.append(f"event {i}: args is not an object")
        if ph == "X":
            if not isinstance(e.get("dur"), (int, float)) or e["dur"] < 0:
                found.append(f"event {i}: a span needs a dur >= 0: {e}")
                continue
            tracks.setdefault((e["pid"], e["tid"]), []).append(e)
        if ph == "C":
            for k, v in e.get("args", {}).items():
                if not isinstance(v, (int, float)) or v < 0:
                    found.append(f"event {i}: counter {e['name']}.{k} = {v!r}")
    for track, spans in tracks.items():
        spans.sort(key=lambda s: (s["ts"], -s["dur"]))
        stack = []
        for s in spans:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= s["ts"] + EPSILON:
                stack.pop()
            if stack and s["ts"] + s["dur"] > stack[-1]["ts"] + stack[-1]["dur"] + EPSILON:
                found.append(f"track {track}: {s['name']} at {s['ts']} overlaps "
                             f"{stack[-1]['name']} at {stack[-1]['ts']} without nesting in it")
            stack.append(s)
    return found


def spans(events, name=None, tid=None):
    return [e for e in events if e.get("ph") == "X" and (name is None or e["name"] == name)
            and (tid is None or e["tid"] == tid)]


def is_idle(e):
    return e["name"].startswith("idle")


def summary(events, clients):
    """Two lines: the loop's busy share and longest handler; the longest wait."""
    work = [e for e in events if e.get("ph") in ("X", "i") and not (e["ph"] == "X" and is_idle(e))]
    if not work:
        return ["nothing happened: no event recorded"]
    start = min(e["ts"] for e in work)
    end = max(e["ts"] + e.get("dur", 0) for e in work)
    window = max(end - start, 1e-9)
    idle = sum(max(0.0, min(e["ts"] + e["dur"], end) - max(e["ts"], start))
               for e in spans(events) if is_idle(e) and e["tid"] == 0)
    handlers = [e for e in spans(events) if not is_idle(e)]
    threads = len({e["tid"] for e in handlers})
    has_loop = any(is_idle(e) for e in spans(events))
    # With a loop, what matters is how long it could not serve anyone: its
    # own thread's handlers (not the pool's, with --offload).
    longest = max((e for e in handlers if e["tid"] == 0 or not has_loop), key=lambda e: e["dur"],
                  default=None)
    if has_loop:
        busy = f"loop busy {100 * (1 - idle / window):.0f}% of {window / 1000:.1f} ms"
    else:
        # No loop to be idle (01: a thread per client, each blocked in its own
        # recv): the threads' handler time against the wall clock.
        ran = sum(e["dur"] for e in handlers if not any(
            o is not e and o["tid"] == e["tid"] and o["ts"] <= e["ts"] and
            e["ts"] + e["dur"] <= o["ts"] + o["dur"] for o in handlers))
        busy = (f"no loop: {threads} thread{'s' if threads != 1 else ''} ran handlers "
                f"{ran / 1000:.1f} ms in all, in {window / 1000:.1f} ms of wall time")
    first = busy
    if longest:
        client = longest.get("args", {}).get("client")
        first += (f"; longest handler {longest['name']}"
                  f"{f' (client {client})' if client else ''} {longest['dur'] / 1000:.1f} ms")
    waits = [w for c in clients if c for w in c.waits]
    second = (f"longest wait a client saw for a frame: {max(waits) * 1000:.1f} ms "
              f"({len(waits)} frames)" if waits else "no client received a frame")
    return [first, second]


# ---------------------------------------------------------------------------
# The page: the trace and a small drawing script, in one file.

def write_html(path, events, title, lines):
    template = (ROOT / "trace" / "timeline.html").read_text()
    page = (template.replace("{{TITLE}}", html.escape(title))
            .replace("{{SUMMARY}}", "<br>".join(html.escape(l) for l in lines))
            .replace("{{TRACE}}", json.dumps(events).replace("</", "<\\/")))
    Path(path).write_text(page)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage")
    parser.add_argument("scenario", nargs="?", default="chatty", choices=SCENARIOS)
    parser.add_argument("--build", default=str(ROOT / "build"), help="the build folder (default build/)")
    parser.add_argument("--out", default=str(ROOT / "build" / "trace"), help="where the files go")
    parser.add_argument("--screenshot", metavar="PNG", help="also a picture of the page (chromium)")
    a = parser.parse_args()
    stage = a.stage.split("_")[0] if a.stage.split("_")[0] in STAGES else a.stage
    if a.scenario == "offload" and stage == "01":
        raise SystemExit("stage 01 has no --offload: its threads already work in parallel (try work)")
    path, events, clients = record(stage, a.scenario, Path(a.build), Path(a.out))
    bad = problems(events)
    if bad:
        print("\n".join(bad[:10]), file=sys.stderr)
        raise SystemExit(f"{path}: {len(bad)} problems")
    lines = summary(events, clients)
    page = path.with_suffix(".html")
    write_html(page, events, f"{path.stem}: {len(events)} events", lines)
    here = Path.cwd()
    show = lambda p: os.path.relpath(p, here)
    print(f"{show(path)}: open it in https://ui.perfetto.dev or chrome://tracing")
    print(f"{show(page)}: our timeline, in any browser")
    for line in lines:
        print("  " + line)
    if a.screenshot:
        screenshot(page, events, Path(a.screenshot))
        print(f"{show(a.screenshot)}: the page, as a picture")


def screenshot(page, events, png):
    """The page in headless chromium (for the READMEs' pictures)."""
    rows = {(e["pid"], e["tid"]) for e in events if e.get("ph") in ("X", "i")}
    height = 230 + 60 * (len(rows) + 1)
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size=1200,{height}", f"--screenshot={png.resolve()}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
