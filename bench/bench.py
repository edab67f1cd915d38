#!/usr/bin/env python3
"""The c10k benchmark: every stage's server and the peers, one run, same load.

    ./workshop bench            # full run (about 20 minutes)
    ./workshop bench --quick    # a taste, under a minute

Each server is started pinned to CPU 0 (taskset), the load generator to CPU 1,
and the servers take turns within each round, so a slow moment of the machine
does not land on one server only. Results are medians over the rounds with
their ranges, and ratios to stage 03 (= 1.00). Written to bench/results/:
bench.md (the tables), *.dat (the numbers) and PNG plots made with gnuplot.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import slow_cpu_ratio, slow_ratio  # one definition, for the tables and the documents

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "03_libuv"


def python_with(module):
    """Debian's python3 if it can import `module` (uvloop comes from apt)."""
    for exe in ("/usr/bin/python3", shutil.which("python3")):
        if exe and subprocess.run([exe, "-c", f"import {module}"], capture_output=True).returncode == 0:
            return exe
    return None


def servers(build):
    """name -> (command, note). A server that is missing is skipped with a note."""
    found, skipped = {}, {}
    ours = {
        "01_threads": [f"{build}/01_blocking/server", "--mode", "threads"],
        "02_select": [f"{build}/02_select/server"],
        "03_libuv": [f"{build}/03_libuv_callbacks/server"],
        "04_coro": [f"{build}/04_coroutines/server"],
        "raw_epoll": [f"{build}/bench/raw_echo"],
    }
    found.update(ours)
    if Path(f"{build}/bench/asio_server").exists():
        found["asio"] = [f"{build}/bench/asio_server"]
    else:
        skipped["asio"] = "libasio-dev not installed"
    node = shutil.which("node")
    if node:
        found["node"] = [node, str(ROOT / "bench/peers/node_server.js")]
    else:
        skipped["node"] = "node not installed"
    # The talk's stack, with the talk's way of relaying: write and move on,
    # no bound for a client that does not read (--unbounded).
    py = python_with("asyncio")
    found["asyncio"] = [py, str(ROOT / "tests/byo/relay_server.py"), "--unbounded"]
    uv = python_with("uvloop")
    if uv:
        found["uvloop"] = [uv, str(ROOT / "tests/byo/relay_server.py"), "--unbounded", "--uvloop"]
    else:
        skipped["uvloop"] = "python3-uvloop not installed"
    return found, skipped


# glibc gives freed heap memory back to the kernel once the free space at the
# top of the heap passes a threshold. With 16 KiB frames the top of the heap
# can sit right at it: every message then costs a few page faults, and which
# run falls into that (at half the speed) is luck. Measured here: ~3 page
# faults per message and 2x the CPU in such runs, none with this setting. So
# every server runs with a high threshold: the figures measure the I/O model,
# not the allocator's luck. (Node and Python keep most of their memory in
# allocators of their own; the setting is harmless to them.)
MALLOC_TUNING = "glibc.malloc.trim_threshold=268435456"


def start(command, extra, cpus="0", env=None):
    """Start a server on CPU 0 (or `cpus`) and wait for its ready line (never a sleep)."""
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNING, **(env or {}))
    proc = subprocess.Popen(["taskset", "-c", cpus, *command, "--port", "0", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"{command[0]} did not start")
    return proc, int(line.rsplit(":", 1)[1])


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


WORK_US = 1000  # --work for the CPU-bound workload: 1 ms of CPU per frame


def demo_tool(build, port, *args, timeout=300):
    """bench/demo.cpp's key=value output as a dict (its latency mode)."""
    out = subprocess.run(["taskset", "-c", "1", f"{build}/bench/demo_tool", *map(str, args[:1]), "--port", str(port),
                          *map(str, args[1:])], capture_output=True, text=True, timeout=timeout)
    fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
    if "p99_ms" not in fields:
        return {"ok": False, "error": fields.get("error", out.stderr.strip()[:200] or "no output")}
    return {"ok": True, **{k: float(v) for k, v in fields.items()}}


def loadgen(build, port, *args, timeout=600):
    out = subprocess.run(["taskset", "-c", "1", f"{build}/bench/loadgen", "--port", str(port), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": (out.stderr or "no output").strip()[:200]}


def machine():
    """What the numbers were measured on."""
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in run("lscpu").splitlines() if l.startswith("Model name")), "?")
    gxx = run("g++", "--version").splitlines()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": run("uname", "-sr"),
        "compiler": gxx[0] if gxx else "?",
        "libuv": run("pkg-config", "--modversion", "libuv"),
        "node": run("node", "--version") if shutil.which("node") else "none",
        "python": run("python3", "--version"),
        "date": time.strftime("%Y-%m-%d"),
    }


def median_range(values):
    return statistics.median(values), min(values), max(values)


class Progress:
    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.time()

    def step(self, what):
        self.done += 1
        elapsed = time.time() - self.start
        print(f"\r[{self.done}/{self.total} {elapsed:5.0f}s] {what:<60}", end="", file=sys.stderr, flush=True)


# The stalled-reader workload's frame sizes: (key suffix, payload bytes, MiB
# moved, rounds). 64 KiB frames, and 1-byte frames -- where what a queued frame
# costs beyond its bytes (a header, an allocation, a write request) would show
# in the peak RSS. 1-byte frames for the event-loop stages only: they are the
# ones with a queue per receiver (01 has none: a blocking send() per frame and
# receiver), and at about 200,000 frames a window the peers take minutes. The
# 1-byte run must move more than the kernel's socket buffers and the 1 MiB
# mark hold, or nothing ever waits in the server.
SMALL_FRAMES_FOR = ("02_select", "03_libuv", "04_coro")


def slow_sizes(megabytes, rounds=1):
    return [("", 64 * 1024, megabytes, rounds), ("1", 1, max(8, megabytes // 64), 1)]


def run_slow_reader(found, build, megabytes, progress, rounds=1):
    """A reader and a sender, alone and next to a client that never reads.

    The reader's speed after the stalled client is cut, against its speed
    alone, is a ratio of two separate runs, and one server's speed varies by
    tens of percent from one start to the next: so several rounds, and the
    round with the median ratio stands for the server ("rounds" keeps all)."""
    slow = {}  # name -> {"alone": result, "stalled": result, "alone1": ..., "stalled1": ..., "rounds": [...]}
    for name, command in found.items():
        for suffix, size, mb, times in slow_sizes(megabytes, rounds):
            if suffix and name not in SMALL_FRAMES_FOR:
                continue
            pairs = []
            for round_ in range(times):
                pair = {}
                for stalled in (0, 1):
                    progress.step(f"slow reader, {size} B frames, round {round_ + 1} "
                                  f"({'with' if stalled else 'without'} a stalled client): {name}")
                    if name == "raw_epoll":
                        continue
                    proc, port = start(command, [])
                    pair["stalled" if stalled else "alone"] = loadgen(
                        build, port, "--mode", "slowreader", "--pid", proc.pid, "--stalled", stalled,
                        "--megabytes", mb, "--size", size)
                    stop(proc)
                if pair:
                    pairs.append(pair)
            if not pairs:
                continue

            def ratio(pair):
                a, s = pair["alone"], pair["stalled"]
                if not (a.get("ok") and s.get("ok")) or not a["mb_per_s"]:
                    return -1.0
                return slow_ratio(a, s)
            pairs.sort(key=ratio)
            middle = pairs[len(pairs) // 2]
            entry = slow.setdefault(name, {})
            entry["alone" + suffix], entry["stalled" + suffix] = middle["alone"], middle["stalled"]
            if not suffix:
                entry["rounds"] = pairs
    return slow


def run_cpu_bound(found, build, frames, progress):
    """A CPU-bound handler (--work): a light client's echo latency while a heavy
    one keeps the server busy, and the heavy one's throughput. Once with the
    server on one core (as everywhere else here) and once on both: threads
    need a second core to run in parallel; an event loop cannot use it,
    unless the work goes to a thread pool (--offload)."""
    configs = [("01_threads", "01_threads", []), ("02_select", "02_select", []),
               ("03_libuv", "03_libuv", []), ("03_offload", "03_libuv", ["--offload"]),
               ("04_coro", "04_coro", []), ("04_offload", "04_coro", ["--offload"])]
    cpu = {}  # (config, cores) -> result
    for config, base, extra in configs:
        for cores, cpus in ((1, "0"), (2, "0,1")):
            progress.step(f"CPU-bound handler (--work {WORK_US}), {cores} core(s): {config}")
            proc, port = start(found[base], ["--echo", "--work", str(WORK_US), *extra], cpus=cpus)
            cpu[(config, cores)] = demo_tool(build, port, "latency", "--frames", frames)
            stop(proc)
    return cpu


TRACED = ["02_select", "03_libuv", "04_coro"]  # the event loops --trace-json records


def run_trace_cost(found, build, rounds, warmup, duration, progress):
    """What recording the loop costs: server CPU per echo message (100 x 64 B)
    with --trace-json on, off, and not compiled in at all (the release-notrace
    build), one after the other in each round."""
    cost = {}
    notrace = Path(f"{build}-notrace")
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        for round_ in range(rounds):
            for name in (n for n in TRACED if n in found):
                for mode in ("none", "off", "on"):
                    command = found[name]
                    if mode == "none":
                        command = [c.replace(str(build), str(notrace), 1) for c in command]
                        if not Path(command[0]).exists():
                            continue  # not built: no baseline
                    progress.step(f"round {round_ + 1}: --trace-json {mode}: {name}")
                    extra = ["--echo"] + (["--trace-json", str(trace)] if mode == "on" else [])
                    proc, port = start(command, extra)
                    before = cpu_seconds(proc.pid)
                    r = loadgen(build, port, "--mode", "echo", "--connections", 100, "--size", 64,
                                "--warmup", warmup, "--duration", duration)
                    if r.get("ok") and r["msgs_per_s"] > 0:
                        used = cpu_seconds(proc.pid) - before
                        r["cpu_us_per_msg"] = used / (r["msgs_per_s"] * (warmup + duration)) * 1e6
                    stop(proc)
                    if mode == "on" and trace.exists():
                        if r.get("cpu_us_per_msg"):
                            r["trace_bytes_per_msg"] = trace.stat().st_size / (r["msgs_per_s"] * (warmup + duration))
                        trace.unlink()
                    cost.setdefault(name, {}).setdefault(mode, []).append(r)
    return cost


def run_multiloop(build, rounds, warmup, duration, progress):
    """The epilogue's one loop per core (epilogue/multiloop_server): with
    CPU-heavy frames (--work), echo throughput with 1 and 2 loops, the server
    on both cores; with cheap frames, server CPU per delivered message when a
    relay crosses loops (2 loops) and when it does not (1), both on core 0 so
    that the difference is the crossing's own work."""
    server = [f"{build}/epilogue/multiloop_server"]
    runs = {"work": {}, "relay": {}}
    if not Path(server[0]).exists():
        return runs
    for round_ in range(rounds):
        for loops in (1, 2):
            progress.step(f"round {round_ + 1}: multiloop, --work {WORK_US}, {loops} loop(s)")
            proc, port = start(server, ["--loops", str(loops), "--echo", "--work", str(WORK_US)], cpus="0,1")
            r = loadgen(build, port, "--mode", "echo", "--connections", 8, "--size", 64,
                        "--warmup", warmup, "--duration", duration)
            stop(proc)
            runs["work"].setdefault(str(loops), []).append(r)
        for loops in (1, 2):
            progress.step(f"round {round_ + 1}: multiloop, fan-out to 100, {loops} loop(s)")
            proc, port = start(server, ["--loops", str(loops)])
            before = cpu_seconds(proc.pid)
            r = loadgen(build, port, "--mode", "fanout", "--receivers", 100, "--size", 64,
                        "--warmup", warmup, "--duration", duration)
            if r.get("ok") and r.get("deliveries_per_s"):
                used = cpu_seconds(proc.pid) - before
                r["cpu_us_per_delivery"] = used / (r["deliveries_per_s"] * (warmup + duration)) * 1e6
            stop(proc)
            runs["relay"].setdefault(str(loops), []).append(r)
    return runs


def run_capacity(found, build, step, most, progress):
    """Idle connections added `step` at a time up to `most`, a round trip on
    a probe after each step, and the server's RSS and threads."""
    capacity = {}
    for name, command in found.items():
        progress.step(f"capacity up to {most} idle connections: {name}")
        if name == "raw_epoll":
            continue
        proc, port = start(command, ["--echo"])
        capacity[name] = loadgen(build, port, "--mode", "capacity", "--pid", proc.pid,
                                 "--step", step, "--max", most)
        stop(proc)
    return capacity


CENSUS = ["03_libuv", "04_coro"]  # the two libuv stages: callbacks against coroutines


def run_census(found, build, progress, connections=1000):
    """What one idle connection holds on the heap, block by block: the server
    runs with bench/heap_census.cpp preloaded, which counts live blocks by
    size between two signals; `connections` idle echo connections open in
    between. Blocks counted about once per connection are that connection's.
    (Its own sleeps give the server time to accept: this is a census, not a
    timing.)"""
    library = Path(build) / "bench/libheap_census.so"
    census = {}
    if not library.exists():
        return {"error": "no bench/libheap_census.so (Linux and glibc only)"}
    for name in CENSUS:
        progress.step(f"census of {connections} idle connections: {name}")
        if name not in found:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "census.txt"
            proc, port = start(found[name], ["--echo"], env={"LD_PRELOAD": str(library),
                                                             "HEAP_CENSUS_OUT": str(out)})
            warm = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
            time.sleep(0.5)  # the first connections' one-time allocations are made
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
            time.sleep(1.0)  # accepted and waiting for a frame
            proc.send_signal(signal.SIGUSR2)
            for _ in range(50):
                if out.exists() and out.stat().st_size > 0:
                    break
                time.sleep(0.1)
            counts = {}
            if out.exists():
                counts = {int(a): int(b) for a, b in (line.split() for line in out.read_text().splitlines())}
            for sock in warm + idle:
                sock.close()
            stop(proc)
        # A connection's blocks: counted (about) once per connection; the
        # rest is noise from the loop's own growth (a vector doubling...).
        blocks = [[size, count] for size, count in sorted(counts.items(), key=lambda kv: -kv[0])
                  if abs(count - connections) <= connections // 50]
        census[name] = {"connections": connections, "blocks": blocks,
                        "all_bytes": sum(size * count for size, count in counts.items())}
    return census


COMPLETION = ["uring", "03_libuv", "raw_epoll"]  # the epilogue's part 3, and what it is measured against


def syscalls_per_message(command, build, conns, size, duration):
    """Every system call the server makes during an echo run, per message,
    counted by strace -c (which slows the server down: so a run of its own,
    and only the counts are kept, not the times)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        proc = subprocess.Popen(["taskset", "-c", "0", "strace", "-f", "-c", "-o", str(out), *command,
                                 "--port", "0", "--echo"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            proc.kill()
            return None
        port = int(line.rsplit(":", 1)[1])
        r = loadgen(build, port, "--mode", "echo", "--connections", conns, "--size", size,
                    "--warmup", 0, "--duration", duration)
        # SIGTERM to the server itself (strace passes it on and writes its table).
        server_pid = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
        os.kill(server_pid, signal.SIGTERM)
        proc.wait(timeout=20)
        if not r.get("ok") or not r.get("msgs_per_s"):
            return None
        counts = {}
        for row in out.read_text().splitlines():
            fields = row.split()
            if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3])
        messages = r["msgs_per_s"] * duration
        return {name: n / messages for name, n in counts.items()}


def run_completion(found, build, rounds, warmup, duration, progress):
    """The epilogue's io_uring server beside stage 03 and the raw epoll floor:
    server CPU per echo message (100 x 64 B, pinned, as the echo workload),
    and system calls per message (one strace -c run each)."""
    runs = {"cpu": {}, "syscalls": {}, "note": ""}
    servers = {n: found[n] for n in COMPLETION if n in found}
    uring = Path(f"{build}/epilogue/uring_server")
    if not uring.exists():
        runs["note"] = "the io_uring server is not built (liburing-dev not installed)"
    else:
        servers["uring"] = [str(uring)]
    for round_ in range(rounds):
        for name in COMPLETION:
            if name not in servers:
                continue
            progress.step(f"round {round_ + 1}: completion vs readiness, echo 100 x 64 B: {name}")
            try:
                proc, port = start(servers[name], ["--echo"])
            except RuntimeError:
                runs["note"] = f"{name} did not start (io_uring unavailable here?)"
                continue
            before = cpu_seconds(proc.pid)
            r = loadgen(build, port, "--mode", "echo", "--connections", 100, "--size", 64,
                        "--warmup", warmup, "--duration", duration)
            if r.get("ok") and r["msgs_per_s"] > 0:
                r["cpu_us_per_msg"] = (cpu_seconds(proc.pid) - before) / (r["msgs_per_s"] * (warmup + duration)) * 1e6
            stop(proc)
            runs["cpu"].setdefault(name, []).append(r)
    if shutil.which("strace"):
        for name in COMPLETION:
            if name in servers:
                progress.step(f"system calls per message (strace -c): {name}")
                runs["syscalls"][name] = syscalls_per_message(servers[name], build, 100, 64, 2)
    else:
        runs["note"] = (runs["note"] + "; " if runs["note"] else "") + "strace not installed: no system call counts"
    return runs


def kernel_memory():
    """What the kernel holds for sockets, machine-wide: /proc/net/sockstat's
    TCP sockets and buffer pages, /proc/meminfo's slab (socket structures,
    their inodes and files, epoll items...)."""
    tcp = {}
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            tcp = {k: int(v) for k, v in zip(fields[::2], fields[1::2])}
    meminfo = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        meminfo[key] = int(value.split()[0])  # kB
    return {"tcp_alloc": tcp.get("alloc", 0), "tcp_mem_pages": tcp.get("mem", 0),
            "slab_kb": meminfo.get("Slab", 0), "sunreclaim_kb": meminfo.get("SUnreclaim", 0),
            "memtotal_kb": meminfo.get("MemTotal", 0)}


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


C100K_PROCESSES = 6  # servers and load generators: each under this machine's 20,000 descriptors


def run_c100k(build, total, progress):
    """The epilogue's c100k: `total` idle echo connections on one machine,
    past the per-process descriptor limit (several multiloop_server processes
    on one port, SO_REUSEPORT) and the ephemeral-port limit (load generators
    on several loopback addresses). The server's memory and the kernel's per
    connection, before and after, and a spread sample that must still answer."""
    server = f"{build}/epilogue/multiloop_server"
    if not Path(server).exists():
        return {"ok": False, "error": "multiloop_server not built"}
    per = -(-total // C100K_PROCESSES)
    limits = {"descriptors": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
              "port_range": [int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()],
              "file_max": int(Path("/proc/sys/fs/file-max").read_text())}
    servers, loadgens, result = [], [], {"ok": False, "target": total, "processes": C100K_PROCESSES,
                                          "limits": limits}
    try:
        progress.step(f"c100k: {C100K_PROCESSES} servers on one port (SO_REUSEPORT)")
        first, port = start([server], ["--loops", "1", "--echo", "--reuse-port"])
        servers.append(first)
        for _ in range(C100K_PROCESSES - 1):
            proc, _ = start([server], ["--loops", "1", "--echo", "--reuse-port", "--port", str(port)])
            servers.append(proc)
        time.sleep(0.5)  # (not waiting for a server: letting the machine settle before the reading)
        before = kernel_memory()
        rss_before = sum(rss_kb(p.pid) for p in servers)
        fds_before = sum(open_descriptors(p.pid) for p in servers)
        progress.step(f"c100k: {total:,} connections from {C100K_PROCESSES} loopback addresses")
        started = time.time()
        for i in range(C100K_PROCESSES):
            loadgens.append(subprocess.Popen(
                ["taskset", "-c", "1", f"{build}/bench/loadgen", "--port", str(port), "--mode", "hold",
                 "--connections", str(per), "--source", f"127.0.0.{2 + i}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        connected = 0
        for g in loadgens:
            line = json.loads(g.stdout.readline() or '{"ok": false, "error": "no output"}')
            if not line.get("ok"):
                result["error"] = line.get("error", "?")
                return result
            connected += line["connected"]
        # Connected is not yet accepted: wait (bounded) until the servers hold them all.
        deadline = time.time() + 120
        held = 0
        while time.time() < deadline:
            held = sum(open_descriptors(p.pid) for p in servers) - fds_before
            if held >= connected:
                break
            time.sleep(0.2)
        result["seconds_to_connect"] = round(time.time() - started, 1)
        after = kernel_memory()
        rss_after = sum(rss_kb(p.pid) for p in servers)
        progress.step("c100k: a spread sample of round trips")
        sampled = answered = 0
        slowest = 0.0
        for g in loadgens:
            g.stdin.write("sample\n")
            g.stdin.flush()
        for g in loadgens:
            line = json.loads(g.stdout.readline() or "{}")
            sampled += line.get("sampled", 0)
            answered += line.get("answered", 0)
            slowest = max(slowest, line.get("slowest_ms", 0.0))
        per_server = [open_descriptors(p.pid) for p in servers]
        result.update(ok=held >= connected, connected=connected, held=held, per_server_descriptors=per_server,
                      server_rss_kb=[rss_before, rss_after], kernel_before=before, kernel_after=after,
                      sampled=sampled, answered=answered, slowest_ms=slowest)
        if held < connected:
            result["error"] = f"the servers held {held} of {connected} connections"
        return result
    finally:
        for g in loadgens:
            try:
                g.stdin.close()
                g.wait(timeout=60)
            except (OSError, subprocess.SubprocessError):
                g.kill()
        for proc in servers:
            stop(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run: a taste, no verdicts")
    parser.add_argument("--build", default=str(ROOT / "build-release"))
    parser.add_argument("--out", help="where to write (default bench/results, or bench/results/quick)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--report", action="store_true", help="only rewrite the tables and plots from raw.json")
    parser.add_argument("--only", choices=["cpu", "slow", "trace", "multiloop", "completion", "c100k", "census", "capacity"],
                        help="run one workload again and merge it into the existing raw.json")
    args = parser.parse_args()
    # A quick run never overwrites the full results that the slides show.
    out = Path(args.out or ROOT / ("bench/results/quick" if args.quick else "bench/results"))
    if args.report:
        write_results(out, **load_raw(out / "raw.json"))
        return

    found, skipped = servers(args.build)
    if args.quick:
        rounds, warmup, duration = args.rounds or 1, 0.1, 0.4
        echo_cases = [(1, 64), (10, 64), (100, 64), (100, 1024)]  # three points to plot
        fanout_cases = [10, 100]
        capacity_max, capacity_step = 2000, 1000
        slow_mb = 20
    else:
        rounds, warmup, duration = args.rounds or 3, 0.5, 1.5
        echo_cases = [(c, s) for c in (1, 10, 100, 1000) for s in (64, 1024, 16384)]
        fanout_cases = [10, 100, 1000]
        capacity_max, capacity_step = 19000, 1000
        slow_mb = 1024  # long enough that cutting off the stalled client is a small part of it

    cpu_frames = 100 if args.quick else 400
    if not Path(args.build).exists():
        sys.exit(f"bench: no build in {args.build}: run ./workshop build release first "
                 "(./workshop bench does it for you)")
    if args.only:
        raw = load_raw(out / "raw.json")
        if args.only == "cpu":
            cpu = run_cpu_bound(found, args.build, cpu_frames, Progress(12))
            raw["cpu_bound"] = [[list(k), v] for k, v in cpu.items()]
        elif args.only == "multiloop":
            raw["multiloop"] = run_multiloop(args.build, rounds, warmup, duration, Progress(4 * rounds))
        elif args.only == "capacity":
            raw["capacity"] = run_capacity(found, args.build, capacity_step, capacity_max, Progress(len(found)))
        elif args.only == "census":
            raw["census"] = run_census(found, args.build, Progress(len(CENSUS)))
        elif args.only == "c100k":
            raw["c100k"] = run_c100k(args.build, 6000 if args.quick else 100_000, Progress(3))
        elif args.only == "completion":
            raw["completion"] = run_completion(found, args.build, rounds, warmup, duration,
                                               Progress(3 * rounds + 3))
        elif args.only == "trace":
            raw["trace_cost"] = run_trace_cost(found, args.build, rounds, warmup, duration,
                                               Progress(3 * rounds * len(TRACED)))
        else:
            raw["slow"] = run_slow_reader(found, args.build, slow_mb, Progress(2 * rounds * len(found) + 2 * len(SMALL_FRAMES_FOR)),
                                          rounds)
        print(file=sys.stderr)
        save_raw(out / "raw.json", raw)
        write_results(out, **raw)
        return

    # What each server cannot do by design: results, not crashes.
    def cannot(name, workload, connections):
        if name == "raw_epoll" and workload != "echo":
            return "echo only (no framing)"
        if name == "02_select" and connections > 1000:
            return "select() stops at FD_SETSIZE (1024)"
        return None

    echo = {}     # (name, conns, size) -> [results]
    fanout = {}   # (name, receivers) -> [results]
    notes = dict(skipped)
    total = (rounds * len(found) * (len(echo_cases) + len(fanout_cases)) + 2 * rounds * len(found)
             + 2 * len(SMALL_FRAMES_FOR) + 12 + 3 * rounds * len(TRACED) + 4 * rounds + 3 * rounds + 3 + 3
             + len(CENSUS))
    progress = Progress(total)

    for round_ in range(rounds):
        for conns, size in echo_cases:
            for name, command in found.items():
                progress.step(f"round {round_ + 1}: echo {conns} conns x {size} B: {name}")
                why = cannot(name, "echo", conns)
                if why:
                    echo.setdefault((name, conns, size), []).append({"ok": False, "error": why})
                    continue
                proc, port = start(command, ["--echo"])
                cpu_before = cpu_seconds(proc.pid)
                r = loadgen(args.build, port, "--mode", "echo", "--connections", conns, "--size", size,
                            "--warmup", warmup, "--duration", duration)
                # Server CPU per message: the fair comparison when the load
                # generator, not the server, sets the pace. (Warm-up messages
                # are counted at the measured rate.)
                if r.get("ok") and r["msgs_per_s"] > 0:
                    used = cpu_seconds(proc.pid) - cpu_before
                    r["cpu_us_per_msg"] = used / (r["msgs_per_s"] * (warmup + duration)) * 1e6
                stop(proc)
                echo.setdefault((name, conns, size), []).append(r)
        for receivers in fanout_cases:
            for name, command in found.items():
                progress.step(f"round {round_ + 1}: fan-out to {receivers}: {name}")
                why = cannot(name, "fanout", receivers)
                if why:
                    fanout.setdefault((name, receivers), []).append({"ok": False, "error": why})
                    continue
                proc, port = start(command, [])
                r = loadgen(args.build, port, "--mode", "fanout", "--receivers", receivers, "--size", 64,
                            "--warmup", warmup, "--duration", duration)
                stop(proc)
                fanout.setdefault((name, receivers), []).append(r)

    slow = run_slow_reader(found, args.build, slow_mb, progress, rounds)

    cpu = run_cpu_bound(found, args.build, cpu_frames, progress)

    trace_cost = run_trace_cost(found, args.build, rounds, warmup, duration, progress)

    multiloop = run_multiloop(args.build, rounds, warmup, duration, progress)

    completion = run_completion(found, args.build, rounds, warmup, duration, progress)

    capacity = run_capacity(found, args.build, capacity_step, capacity_max, progress)

    census = run_census(found, args.build, progress)

    # Last: its load generators bind() 100,000 sockets to source addresses,
    # and those ports stay taken for a minute after (TIME_WAIT), where the
    # capacity workload's connect() would run out of them.
    c100k = run_c100k(args.build, 6000 if args.quick else 100_000, progress)
    print(file=sys.stderr)

    raw = dict(names=list(found), notes=notes, echo=echo, fanout=fanout, capacity=capacity, slow=slow,
               cpu_bound=[[list(k), v] for k, v in cpu.items()], trace_cost=trace_cost,
               multiloop=multiloop, completion=completion, c100k=c100k, census=census, slow_mb=slow_mb, echo_cases=echo_cases, fanout_cases=fanout_cases, rounds=rounds,
               quick=args.quick, machine=machine())
    save_raw(out / "raw.json", raw)
    write_results(out, **raw)


def save_raw(path, raw):
    """Every measurement as measured, so the report can be rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(raw)
    data["echo"] = [[list(k), v] for k, v in raw["echo"].items()]
    data["fanout"] = [[list(k), v] for k, v in raw["fanout"].items()]
    path.write_text(json.dumps(data, indent=1))


def load_raw(path):
    data = json.loads(path.read_text())
    data["echo"] = {tuple(k): v for k, v in data["echo"]}
    data["fanout"] = {tuple(k): v for k, v in data["fanout"]}
    data["echo_cases"] = [tuple(c) for c in data["echo_cases"]]
    return data


def summarise(results, key):
    ok = [r[key] for r in results if r.get("ok")]
    if len(ok) < len(results):
        errors = {r.get("error", "?") for r in results if not r.get("ok")}
        return None, "; ".join(sorted(errors))
    return median_range(ok), None


def fmt_rate(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


def write_results(out, names, notes, echo, fanout, capacity, slow, slow_mb, echo_cases, fanout_cases,
                  rounds, quick, machine, cpu_bound=None, trace_cost=None,
                  multiloop=None, completion=None, c100k=None, census=None):
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Benchmark results{' (quick run)' if quick else ''}", "",
             f"One run, {machine['date']}: {machine['cpu']}, {machine['cpus']} CPUs, "
             f"{machine['memory_gib']} GiB; {machine['kernel']}; {machine['compiler']}; libuv "
             f"{machine['libuv']}; node {machine['node']}; {machine['python']}.", "",
             f"Server pinned to CPU 0, load generator to CPU 1; every server with `GLIBC_TUNABLES="
             f"{MALLOC_TUNING}` (see bench/README.md); {rounds} round(s)"
             f"{', medians with [min-max]' if rounds > 1 else ''}; ratio to stage 03 in parentheses."
             f"{' A quick run is a taste, too short to judge a goal by.' if quick else ''} Produced by `./workshop bench"
             f"{' --quick' if quick else ''}` ([bench/README.md](../README.md)).", ""]

    # A summary small enough for a slide (slides/ include it by its anchor).
    sum_case = next((c for c in echo_cases if c == (100, 1024)), echo_cases[-1])
    fan_case = next((n for n in fanout_cases if n == 100), fanout_cases[-1])
    # (A quick run's summary is not for the slides: no anchors.)
    lines += ["## Summary", ""] + ([] if quick else ["<!-- ANCHOR: summary -->"]) + [
              f"| server | echo, {sum_case[0]} conn x {sum_case[1]} B (msgs/s) | server CPU per message "
              f"| fan-out to {fan_case} (deliveries/s) | bytes per idle connection | stalled reader: peak RSS |",
              "|---|---|---|---|---|---|"]
    ref_sum = summarise(echo[(REFERENCE, *sum_case)], "msgs_per_s")[0] if (REFERENCE, *sum_case) in echo else None
    for name in names:
        e, _ = summarise(echo[(name, *sum_case)], "msgs_per_s")
        f, _ = summarise(fanout[(name, fan_case)], "deliveries_per_s")
        echo_cell = "--" if not e else fmt_rate(e[0]) + (f" ({e[0] / ref_sum[0]:.2f})" if ref_sum else "")
        fan_cell = "--" if not f else fmt_rate(f[0])
        per_conn, slow_cell = "--", "--"
        steps = (capacity.get(name) or {}).get("steps", [])
        if len(steps) >= 2:
            per = (steps[-1]["rss_kb"] - steps[0]["rss_kb"]) * 1024 / max(1, steps[-1]["connections"] - steps[0]["connections"])
            per_conn = f"{per:.0f} B (at {steps[-1]['connections']})"
        stalled = (slow.get(name) or {}).get("stalled", {})
        if stalled.get("ok"):
            slow_cell = f"{stalled['peak_rss_kb'] / 1024:.0f} MiB"
        cpu = [r["cpu_us_per_msg"] for r in echo[(name, *sum_case)] if "cpu_us_per_msg" in r]
        ref_cpu = [r["cpu_us_per_msg"] for r in echo.get((REFERENCE, *sum_case), []) if "cpu_us_per_msg" in r]
        cpu_cell = "--"
        if cpu:
            c = statistics.median(cpu)
            cpu_cell = f"{c:.1f} us" + (f" ({c / statistics.median(ref_cpu):.2f})" if ref_cpu else "")
        lines.append(f"| {name} | {echo_cell} | {cpu_cell} | {fan_cell} | {per_conn} | {slow_cell} |")
    lines += ([] if quick else ["<!-- ANCHOR_END: summary -->"]) + [""]

    # Echo table: messages per second.
    lines += ["## Closed-loop echo: messages per second", "",
              "| server | " + " | ".join(f"{c} conn x {s} B" for c, s in echo_cases) + " |",
              "|---|" + "---|" * len(echo_cases)]
    ref = {case: summarise(echo[(REFERENCE, *case)], "msgs_per_s")[0] for case in echo_cases if (REFERENCE, *case) in echo}
    failures = []
    for name in names:
        cells = []
        for case in echo_cases:
            summary, error = summarise(echo[(name, *case)], "msgs_per_s")
            if error:
                cells.append("--")
                failures.append(f"{name}, echo {case[0]} x {case[1]} B: {error}")
                continue
            (m, lo, hi), r = summary, ref.get(case)
            ratio = f" ({m / r[0]:.2f})" if r else ""
            spread = f" [{fmt_rate(lo)}-{fmt_rate(hi)}]" if rounds > 1 else ""
            cells.append(f"{fmt_rate(m)}{spread}{ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    # Server CPU per message: who does the same work with less?
    lines += ["", "## Echo: server CPU time per message (microseconds; ratio to stage 03)", "",
              "| server | " + " | ".join(f"{c} conn x {s} B" for c, s in echo_cases) + " |",
              "|---|" + "---|" * len(echo_cases)]
    for name in names:
        cells = []
        for case in echo_cases:
            cpu = [r["cpu_us_per_msg"] for r in echo[(name, *case)] if "cpu_us_per_msg" in r]
            ref_cpu = [r["cpu_us_per_msg"] for r in echo.get((REFERENCE, *case), []) if "cpu_us_per_msg" in r]
            if not cpu:
                cells.append("--")
                continue
            c = statistics.median(cpu)
            cells.append(f"{c:.1f}" + (f" ({c / statistics.median(ref_cpu):.2f})" if ref_cpu else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    # Latency at 100 connections (or the largest case present).
    lat_case = next((c for c in echo_cases if c[0] == 100), echo_cases[-1])
    lines += ["", f"## Echo latency, {lat_case[0]} connections x {lat_case[1]} B (microseconds, median of rounds)", "",
              "| server | p50 | p99 | p99.9 | MB/s |", "|---|---|---|---|---|"]
    for name in names:
        res = [r for r in echo[(name, *lat_case)] if r.get("ok")]
        if not res:
            lines.append(f"| {name} | -- | -- | -- | -- |")
            continue
        med = lambda k: statistics.median(r[k] for r in res)
        lines.append(f"| {name} | {med('p50_us'):.0f} | {med('p99_us'):.0f} | {med('p999_us'):.0f} | {med('mb_per_s'):.1f} |")

    # Fan-out.
    lines += ["", "## Relay fan-out: one sender, deliveries per second (p99 until the last receiver, us)", "",
              "| server | " + " | ".join(f"{n} receivers" for n in fanout_cases) + " |",
              "|---|" + "---|" * len(fanout_cases)]
    for name in names:
        cells = []
        for n in fanout_cases:
            summary, error = summarise(fanout[(name, n)], "deliveries_per_s")
            if error:
                cells.append("--")
                failures.append(f"{name}, fan-out {n}: {error}")
                continue
            p99 = statistics.median(r["p99_us"] for r in fanout[(name, n)])
            cells.append(f"{fmt_rate(summary[0])} (p99 {p99:.0f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    # Slow reader.
    mb_big, mb_small = slow_sizes(slow_mb)[0][2], slow_sizes(slow_mb)[1][2]
    lines += ["", f"## A stalled receiver while a reader takes {mb_big} MiB (64 KiB frames) or {mb_small} MiB "
              "(1-byte frames)", "",
              "A sender and a reader exchange frames in 1 MiB windows while a third client never "
              "reads. A server that slows senders down holds everyone back until it cuts the "
              "stalled client (our stall timeout: 5 s): the reader's longest wait. After the cut "
              "the reader should be back at its speed alone. With 1-byte frames a window is "
              "about 200,000 frames: what a server pays per queued frame beyond its bytes shows "
              "in its peak RSS (measured for the event-loop stages, the ones with a queue per receiver). "
              "Goal: peak server RSS under 64 MiB for both sizes, and with "
              "64 KiB frames the reader after the wait at 0.9x of its speed before or better. The "
              "stalled client joins half-way, so 'before' and 'after' come from one server process "
              "(two starts of one server differ by tens of percent); the server's CPU time per MB "
              "after against before says whether the server itself does more work once the "
              "stalled client is gone.", "",
              "| server | frames | reader alone (MB/s) | before (MB/s) | longest wait (s) | after the wait (MB/s) "
              "| ratio | server CPU per MB, after/before | overall (MB/s) | peak RSS (MiB) | goal |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, suffix in [(n, s) for s in ("", "1") for n in names]:
        r = slow.get(name)
        if not r or ("alone" + suffix) not in r:
            continue
        alone, stalled = r.get("alone" + suffix, {}), r.get("stalled" + suffix, {})
        frames = "64 KiB" if not suffix else "1 B"
        if not (alone.get("ok") and stalled.get("ok")):
            error = alone.get("error") or stalled.get("error")
            lines.append(f"| {name} | {frames} | -- | -- | -- | -- | -- | -- | -- | -- | failed: {error} |")
            continue
        after = stalled.get("mb_per_s_after_wait", stalled["mb_per_s"])
        ratio = slow_ratio(alone, stalled)
        peak = stalled["peak_rss_kb"] / 1024
        met = "met" if (ratio >= 0.9 or suffix) and peak < 64 else "missed"
        if quick:
            met = "--"  # one short round says nothing about a goal
        ratio_cell = f"{ratio:.2f}"
        rounds_ok = [p for p in (r.get("rounds") or []) if not suffix and p["alone"].get("ok") and p["stalled"].get("ok")]
        spread = [slow_ratio(p["alone"], p["stalled"]) for p in rounds_ok]
        if len(spread) > 1:
            ratio_cell += f" [{min(spread):.2f}-{max(spread):.2f}]"
        cpu_cell = f"{slow_cpu_ratio(stalled):.2f}" if slow_cpu_ratio(stalled) else "--"
        cpu_spread = [c for c in (slow_cpu_ratio(p["stalled"]) for p in rounds_ok) if c]
        if len(cpu_spread) > 1:
            cpu_cell += f" [{min(cpu_spread):.2f}-{max(cpu_spread):.2f}]"
        before = f"{stalled['mb_per_s_before']:.0f}" if stalled.get("mb_per_s_before") else "--"
        lines.append(f"| {name} | {frames} | {alone['mb_per_s']:.0f} | {before} | {stalled.get('longest_wait_s', 0):.1f} | "
                     f"{after:.0f} | {ratio_cell} | {cpu_cell} | {stalled['mb_per_s']:.0f} | {peak:.1f} | {met} |")

    # A CPU-bound handler.
    cpu = {tuple(k): v for k, v in (cpu_bound or [])}
    if cpu:
        lines += ["", f"## A CPU-bound handler: --work {WORK_US} (1 ms of CPU per frame)", "",
                  "A heavy client keeps 8 frames in flight; a light one sends small frames one at a "
                  "time and times each echo. The server on one core, then on both (the load "
                  "generator shares them). Threads (01) need the second core to run the two clients "
                  "in parallel; one event loop (02, 03, 04) makes the light client wait behind the "
                  "heavy one's frames, on any number of cores, unless the work goes to a thread "
                  "pool (--offload).", "",
                  "| server | 1 core: light p50 (ms) | p99 | heavy frames/s | 2 cores: light p50 (ms) "
                  "| p99 | heavy frames/s |", "|---|---|---|---|---|---|---|"]
        with open(out / "cpu.dat", "w") as dat:
            dat.write("# config p99_1core p99_2cores\n")
            for config in dict.fromkeys(k[0] for k in cpu):
                cells, p99 = [], []
                for cores in (1, 2):
                    r = cpu.get((config, cores), {})
                    if r.get("ok"):
                        cells += [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['heavy_per_s']:.0f}"]
                        p99.append(f"{r['p99_ms']:.3f}")
                    else:
                        cells += ["--", "--", "--"]
                        p99.append("NaN")
                lines.append(f"| {config} | " + " | ".join(cells) + " |")
                dat.write(f"{config} {' '.join(p99)}\n")

    # What --trace-json costs.
    if trace_cost:
        lines += ["", "## Recording the loop: --trace-json", "",
                  "Echo, 100 connections x 64 B: server CPU per message built without --trace-json "
                  "(release-notrace), built with it but off, and on -- one after the other in each "
                  "round (medians; the rounds' spread in brackets).", "",
                  "| server | not built in (us/msg) | off (us/msg) | on (us/msg) | off / not built in "
                  "| on / off | trace written per message |",
                  "|---|---|---|---|---|---|---|"]

        def cells(mine, base):
            pairs = [(m["cpu_us_per_msg"], b["cpu_us_per_msg"]) for m, b in zip(mine, base)
                     if m.get("cpu_us_per_msg") and b.get("cpu_us_per_msg")]
            if not pairs:
                return "--"
            ratios = [m / b for m, b in pairs]
            return f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"

        def cpu_of(runs):
            values = [r["cpu_us_per_msg"] for r in runs if r.get("cpu_us_per_msg")]
            return f"{statistics.median(values):.1f}" if values else "--"

        for name, modes in trace_cost.items():
            none, off, on = modes.get("none", []), modes.get("off", []), modes.get("on", [])
            per_msg = [r["trace_bytes_per_msg"] for r in on if r.get("trace_bytes_per_msg")]
            lines.append(f"| {name} | {cpu_of(none)} | {cpu_of(off)} | {cpu_of(on)} | {cells(off, none)} | "
                         f"{cells(on, off)} | " + (f"{statistics.median(per_msg):.0f} B |" if per_msg else "-- |"))

    # The epilogue: one loop per core.
    if multiloop and (multiloop.get("work") or multiloop.get("relay")):
        def median_of(runs, key):
            values = [r[key] for r in runs if r.get("ok") and r.get(key)]
            return (statistics.median(values), min(values), max(values)) if values else None

        lines += ["", "## Epilogue: one loop per core (epilogue/multiloop_server)", "",
                  f"CPU-heavy frames: echo, 8 connections x 64 B, --work {WORK_US} us per frame, the server "
                  "on both cores (the load generator shares core 1). Cheap frames: fan-out to 100 receivers "
                  "x 64 B, the server on core 0: with 2 loops every relay crosses to the other loop. "
                  "Medians, the rounds' range in brackets.", "",
                  "| loops | --work: frames/s | --work: x 1 loop | fan-out: server CPU per delivery (us) "
                  "| fan-out: x 1 loop |",
                  "|---|---|---|---|---|"]
        base_work = median_of(multiloop["work"].get("1", []), "msgs_per_s")
        base_cpu = median_of(multiloop["relay"].get("1", []), "cpu_us_per_delivery")
        for loops in ("1", "2"):
            work = median_of(multiloop["work"].get(loops, []), "msgs_per_s")
            cpu = median_of(multiloop["relay"].get(loops, []), "cpu_us_per_delivery")
            lines.append(
                f"| {loops} | " + (f"{work[0]:,.0f} [{work[1]:,.0f}-{work[2]:,.0f}]" if work else "--") + " | "
                + (f"{work[0] / base_work[0]:.2f}x" if work and base_work else "--") + " | "
                + (f"{cpu[0]:.2f} [{cpu[1]:.2f}-{cpu[2]:.2f}]" if cpu else "--") + " | "
                + (f"{cpu[0] / base_cpu[0]:.2f}x" if cpu and base_cpu else "--") + " |")

    # The epilogue: completion (io_uring) against readiness.
    if completion and (completion.get("cpu") or completion.get("syscalls")):
        lines += ["", "## Epilogue: completion instead of readiness (epilogue/uring_server)", "",
                  "Echo, 100 connections x 64 B, the server on core 0: server CPU per message (medians over "
                  "the rounds, range in brackets, and against 03 per round), and system calls per message "
                  "counted by `strace -c` in a run of its own." +
                  (f" Note: {completion['note']}." if completion.get("note") else ""), "",
                  "| server | CPU per message (us) | x 03 | system calls per message | of which |",
                  "|---|---|---|---|---|"]
        base = completion["cpu"].get("03_libuv", [])
        for name in COMPLETION:
            runs = completion["cpu"].get(name, [])
            values = [r["cpu_us_per_msg"] for r in runs if r.get("cpu_us_per_msg")]
            ratios = [m["cpu_us_per_msg"] / b["cpu_us_per_msg"] for m, b in zip(runs, base)
                      if m.get("cpu_us_per_msg") and b.get("cpu_us_per_msg")]
            calls = (completion.get("syscalls") or {}).get(name) or {}
            top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:3] if v >= 0.01)
            lines.append(f"| {name} | " + (f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"
                                           if values else "--") + " | "
                         + (f"{statistics.median(ratios):.2f}x" if ratios else "--") + " | "
                         + (f"{sum(calls.values()):.2f}" if calls else "--") + f" | {top or '--'} |")

    # The epilogue: c100k on one machine.
    if c100k:
        lines += ["", "## Epilogue: c100k on one machine", ""]
        if c100k.get("ok"):
            n = c100k["held"]
            before, after = c100k["kernel_before"], c100k["kernel_after"]
            lines += [f"{n:,} idle echo connections held by {c100k['processes']} multiloop_server processes on "
                      f"one port (SO_REUSEPORT; {', '.join(f'{d:,}' for d in c100k['per_server_descriptors'])} "
                      f"descriptors each), from load generators on {c100k['processes']} loopback addresses, "
                      f"connected in {c100k['seconds_to_connect']:.0f} s. A round trip on every 1000th: "
                      f"{c100k['answered']} of {c100k['sampled']} answered, the slowest in "
                      f"{c100k['slowest_ms']:.1f} ms.", "",
                      "| per connection | bytes |", "|---|---|",
                      f"| server memory (RSS growth of all servers) | "
                      f"{(c100k['server_rss_kb'][1] - c100k['server_rss_kb'][0]) * 1024 / n:,.0f} |",
                      f"| kernel slab (both ends: two sockets) | "
                      f"{(after['slab_kb'] - before['slab_kb']) * 1024 / n:,.0f} |",
                      f"| kernel socket buffers (sockstat TCP mem) | "
                      f"{(after['tcp_mem_pages'] - before['tcp_mem_pages']) * 4096 / n:,.0f} |"]
        else:
            lines.append(f"Not measured: {c100k.get('error', '?')}")

    # What an idle connection holds.
    if census and not census.get("error"):
        lines += ["", "## What an idle connection holds: heap blocks", "",
                  "The server with `bench/heap_census.cpp` preloaded: the live heap blocks counted once per "
                  "idle connection (usable size: what malloc gives, less its 8-byte header).", "",
                  "| server | connections | blocks per connection (bytes) | total per connection |",
                  "|---|---|---|---|"]
        for name, c in census.items():
            blocks = c["blocks"]
            total = sum(size * count for size, count in blocks) / c["connections"]
            lines.append(f"| {name} | {c['connections']:,} | {' + '.join(str(size) for size, _ in blocks) or '--'} | "
                         f"{total:,.0f} B |")
    elif census:
        lines += ["", "## What an idle connection holds: heap blocks", "", f"Not measured: {census['error']}"]

    # Capacity.
    lines += ["", "## Idle connections: server memory", "",
              "| server | connections held | RSS at the end (MiB) | bytes per idle connection | threads | note |",
              "|---|---|---|---|---|---|"]
    with open(out / "capacity.dat", "w") as dat:
        for i, name in enumerate(names):
            r = capacity.get(name)
            dat.write(f"# {name}\n")  # one block per server, even empty: plots index by position
            if not r:
                dat.write("0 NaN\n\n\n")
                continue
            steps = r.get("steps", [])
            if len(steps) >= 2:
                first, last = steps[0], steps[-1]
                per = (last["rss_kb"] - first["rss_kb"]) * 1024 / max(1, last["connections"] - first["connections"])
                lines.append(f"| {name} | {last['connections']} | {last['rss_kb'] / 1024:.1f} | {per:.0f} | "
                             f"{last['threads']} | {r.get('error', '')} |")
            else:
                lines.append(f"| {name} | -- | -- | -- | -- | {r.get('error', '')} |")
            for s in steps:
                dat.write(f"{s['connections']} {s['rss_kb'] / 1024:.2f}\n")
            if not steps:
                dat.write("0 NaN\n")
            dat.write("\n\n")

    if failures or notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {name}: skipped, {why}" for name, why in notes.items()]
        lines += [f"- {f}" for f in sorted(set(failures))]

    # Data for plots: echo throughput (64 B) vs connections; fan-out p99.
    with open(out / "echo.dat", "w") as dat:
        for name in names:
            dat.write(f"# {name}\n")
            for c, s in echo_cases:
                if s != echo_cases[0][1]:
                    continue
                summary, error = summarise(echo[(name, c, s)], "msgs_per_s")
                dat.write(f"{c} {'NaN' if error else f'{summary[0]:.0f}'}\n")
            dat.write("\n\n")
    with open(out / "fanout.dat", "w") as dat:
        for name in names:
            dat.write(f"# {name}\n")
            for n in fanout_cases:
                res = [r for r in fanout[(name, n)] if r.get("ok")]
                ok = res and len(res) == len(fanout[(name, n)])
                dat.write(f"{n} {statistics.median(r['p99_us'] for r in res) if ok else 'NaN'}\n")
            dat.write("\n\n")

    table = "\n".join(lines) + "\n"
    (out / "bench.md").write_text(table)
    plot(out, names)
    print(table)
    # The full run's figures travel on: into every document that quotes one
    # (bench/figures.py) and into the decks' tables (slides/excerpts.py).
    if not quick and out.resolve() == (ROOT / "bench/results").resolve():
        subprocess.run([sys.executable, str(ROOT / "bench/figures.py"), "--update"], check=True)
        subprocess.run([sys.executable, str(ROOT / "slides/excerpts.py"), "--update"], check=True)


# One colour per server, the same in every plot, none shared (Okabe-Ito and
# friends: distinct for colour-blind readers too), and a point type each.
COLOURS = {"01_threads": "#E69F00", "02_select": "#56B4E9", "03_libuv": "#009E73",
           "04_coro": "#0072B2", "raw_epoll": "#000000", "asio": "#D55E00", "node": "#CC79A7",
           "asyncio": "#999933", "uvloop": "#882255"}


def has_data(datafile, index):
    """True when block `index` of a gnuplot data file has a number (not NaN)."""
    blocks = Path(datafile).read_text().split("\n\n\n")
    if index >= len(blocks):
        return False
    return any(len(l.split()) > 1 and l.split()[1] != "NaN"
               for l in blocks[index].splitlines() if l and not l.startswith("#"))


def plot(out, names):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("(gnuplot not installed: no plots)", file=sys.stderr)
        return
    def series(datafile):
        # A server with no figure here (raw_epoll in fan-out...) stays out of the legend.
        return ", ".join(
            f"'{datafile}' index {i} with linespoints lw 3 pt {i + 4} ps 1.5 "
            f"lc rgb '{COLOURS.get(n, '#444444')}' title '{n}'"
            for i, n in enumerate(names) if has_data(datafile, i))
    script = f"""
set terminal pngcairo size 1200,700 font ',18' noenhanced
set grid
set key outside right
set output '{out}/echo_throughput.png'
set title "Closed-loop echo, 64 B frames\\n(flat from 10 on: the one-thread load generator is the limit;\\ncompare servers by CPU per message, in bench.md)"
set xlabel 'connections'; set ylabel 'messages per second'
set logscale x
plot {series(f'{out}/echo.dat')}
set title
set output '{out}/fanout_latency.png'
set title 'Relay fan-out: p99 until the last receiver has the frame'
set xlabel 'receivers'; set ylabel 'microseconds'
set logscale y
plot {series(f'{out}/fanout.dat')}
unset logscale
set output '{out}/memory.png'
set title 'Server memory with idle connections'
set xlabel 'idle connections'; set ylabel 'RSS (MiB)'
set arrow 1 from 1024, graph 0 to 1024, graph 1 nohead dt 2 lw 2 lc rgb '#56B4E9'
set label 3 'FD_SETSIZE: 02 stops' at 1200, graph 0.92 tc rgb '#56B4E9'
plot {series(f'{out}/capacity.dat')}
unset arrow 1; unset label 3
"""
    if (out / "cpu.dat").exists():
        script += f"""
set output '{out}/cpu_latency.png'
set terminal pngcairo size 1000,560 font ',16' noenhanced
set title 'A CPU-bound handler (--work 1 ms): light client p99 next to a heavy one'
set xlabel ''; set ylabel 'milliseconds'
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.9 border -1
set boxwidth 0.9; set key inside top left; set yrange [0:*]; unset logscale
set xtics rotate by -20
plot '{out}/cpu.dat' using 2:xtic(1) title 'server on 1 core' lc rgb '#d95f02', '' using 3 title 'on 2 cores' lc rgb '#1b9e77'
"""
    subprocess.run([gnuplot], input=script, text=True, check=False, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
