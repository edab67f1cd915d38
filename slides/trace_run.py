#!/usr/bin/env python3
"""Records the traces the timeline slide draws: two clients, three frames
each, against a server that spends --work on every frame.

    python3 slides/trace_run.py    # writes slides/data/trace-01.txt, trace-02.txt

Stage 01 (a thread per client) and stage 02 (one thread, select()) with
--echo --work 20000 --trace, from the built binaries in build/.
"""
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "trace-01.txt": ["build/01_blocking/server", "--mode", "threads"],
    "trace-02.txt": ["build/02_select/server"],
}


def client(port):
    s = socket.create_connection(("127.0.0.1", port))
    for _ in range(3):
        s.sendall(struct.pack(">I", 5) + b"hello")
    got = b""
    while len(got) < 27:
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    s.close()


def record(name, cmd):
    server = subprocess.Popen([str(ROOT / cmd[0]), *cmd[1:], "--port", "0", "--echo", "--work", "20000",
                               "--trace"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    threads = [threading.Thread(target=client, args=(port,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.2)
    server.terminate()
    _, err = server.communicate(timeout=10)
    trace = "".join(l + "\n" for l in err.splitlines() if l.startswith("[trace"))
    (ROOT / "slides/data" / name).write_text(trace)
    print(f"slides/data/{name}: {trace.count(chr(10))} lines", file=sys.stderr)


if __name__ == "__main__":
    for name, cmd in RUNS.items():
        record(name, cmd)
