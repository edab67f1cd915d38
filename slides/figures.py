#!/usr/bin/env python3
"""Draws the decks' pictures, in English and in Spanish, as SVG.

    python3 slides/figures.py      # writes slides/img/*.en.svg and *.es.svg

The charts take their numbers from the measurements, never from this file:
  bench/results/bench.md     idle connections, the stalled receiver, a CPU-bound
                             handler, the epilogue's system calls per message
                             (all from `./workshop bench`)
  slides/data/0?-work.json   the timeline (slides/trace_run.py: ./workshop trace's runs)
The diagrams (the event loop, the callback flow, a coroutine suspending) are
drawn here too, so that both languages share one layout. Every label is 20
units or more in a picture the slides show at 1:1 or larger (the event loop,
shown at 0.95, has 26-unit labels), which the browser test checks (18 px at
least), with no two labels overlapping. No label crosses an arrow either:
the test does not check that, so look at the screenshots. Numbers follow the
language: 2,048.5 in English, 2048,5 in Spanish.
"""
import json
import re
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "slides/img"
FONT = 'font-family="DejaVu Sans, sans-serif"'

# One colour per family, distinct at a glance and in grey print.
COLOURS = {"ours": "#1f5fbf", "cpp": "#7b3fa0", "node": "#2e8540", "python": "#d9531e", "floor": "#666666"}
FAMILY = {"01_threads": "ours", "02_select": "ours", "03_libuv": "ours", "04_coro": "ours",
          "asio": "cpp", "node": "node", "asyncio": "python", "uvloop": "python", "raw_epoll": "floor"}

T = {
    "en": {
        "memory": "Server memory per idle connection, {held} connections held",
        "memory_note": "02 select: stops at {held} (FD_SETSIZE = 1024)",
        "stalled": "Peak server memory while one client never reads (1 GiB relayed)",
        "families": {"ours": "ours (01–04)", "cpp": "Asio (C++)", "node": "Node.js",
                     "python": "Python (asyncio, uvloop)"},
        "names": {"03_offload": "03 --offload", "04_offload": "04 --offload", "uring": "io_uring",
                  "raw_epoll": "epoll floor"},
        "cpu": "A light client's p99 round trip while a heavy one sends 1 ms CPU frames",
        "cpu_note": "the server on both cores; ./workshop bench",
        "syscalls": "System calls per echo message (100 connections × 64 B, strace -c)",
        "syscalls_note": "io_uring: one io_uring_enter submits and reaps many; ./workshop bench",
        "offload": "--offload",
        "loop_title": "The event loop",
        "loop": ["the loop", "(one thread)", "wait: epoll / select", "ready: who can go?",
                 "run its callback", "it starts more I/O"],
        "cb_title": "The callback flow of stage 03",
        "cb": ["accept", "alloc", "on_readable", "decode", "uv_write", "close_client", "close callback: free",
               "on_write_done: the buffer may go", "EOF, error, limit", "back to the loop"],
        "co_title": "A coroutine suspends at co_await and the loop resumes it",
        "co": ["handle_connection (one per client)", "event loop (libuv)", "co_await frames.next()",
               "suspends: back to the loop", "bytes arrived:", "resume here", "co_await again",
               "other clients' callbacks and coroutines run here"],
        "tl_title": "Two clients, three frames each, 20 ms of --work per frame (./workshop trace)",
        "tl_01": "01 threads: a thread per client, both frames in progress at once",
        "tl_02": "02 select: one thread, the frames wait in line",
        "tl_axis": "ms since the first frame",
        "client": "client",
        "decimal": ".", "thousands": ",",
    },
    "es": {
        "memory": "Memoria del servidor por conexión inactiva, con {held} conexiones",
        "memory_note": "02 select: se para en {held} (FD_SETSIZE = 1024)",
        "stalled": "Pico de memoria con un cliente que nunca lee (1 GiB retransmitido)",
        "families": {"ours": "los nuestros (01–04)", "cpp": "Asio (C++)", "node": "Node.js",
                     "python": "Python (asyncio, uvloop)"},
        # The servers' names in bench.md, in Spanish.
        "names": {"01_threads": "01 hilos", "02_select": "02 select", "03_libuv": "03 libuv",
                  "04_coro": "04 corrutinas", "03_offload": "03 --offload", "04_offload": "04 --offload",
                  "uring": "io_uring", "raw_epoll": "suelo de epoll"},
        "cpu": "p99 de ida y vuelta del cliente ligero (el pesado: 1 ms de CPU por trama)",
        "cpu_note": "el servidor en los dos núcleos; ./workshop bench",
        "syscalls": "Llamadas al sistema por mensaje de eco (100 conexiones × 64 B, strace -c)",
        "syscalls_note": "io_uring: un io_uring_enter envía y recoge muchas; ./workshop bench",
        "offload": "--offload",
        "loop_title": "El bucle de eventos",
        "loop": ["el bucle", "(un hilo)", "esperar: epoll / select", "listo: ¿quién sigue?",
                 "ejecutar su callback", "lanzar más E/S"],
        "cb_title": "El flujo de callbacks de la etapa 03",
        "cb": ["accept", "alloc", "on_readable", "decodificar", "uv_write", "close_client",
               "callback de cierre: liberar", "on_write_done: se libera el búfer", "EOF, error, límite",
               "vuelta al bucle"],
        "co_title": "Una corrutina se suspende en co_await y el bucle la reanuda",
        "co": ["handle_connection (una por cliente)", "bucle de eventos (libuv)", "co_await frames.next()",
               "se suspende: vuelve al bucle", "llegaron bytes:", "se reanuda aquí", "co_await otra vez",
               "aquí corren los callbacks y corrutinas de otros clientes"],
        "tl_title": "Dos clientes, tres tramas cada uno, 20 ms de --work por trama (./workshop trace)",
        "tl_01": "01 hilos: un hilo por cliente, las dos tramas en curso a la vez",
        "tl_02": "02 select: un hilo, las tramas esperan en fila",
        "tl_axis": "ms desde la primera trama",
        "client": "cliente",
        # Spanish numbers: a decimal comma, no thousands separator (2048 MiB).
        "decimal": ",", "thousands": "",
    },
}


def svg(width, height, title, body):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" {FONT} font-size="22">\n'
            f"  <title>{escape(title)}</title>\n"
            '  <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
            ' orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>\n'
            f'  <rect width="{width}" height="{height}" fill="#fff"/>\n{body}</svg>\n')


def text(x, y, s, size=22, anchor="start", fill="#111", weight="normal"):
    return (f'  <text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"'
            f' font-weight="{weight}">{escape(s)}</text>\n')


def table(md, heading):
    """Rows of the Markdown table under `## heading...` in bench.md."""
    section = md.split("\n## " + heading, 1)[1].split("\n## ", 1)[0]
    rows = [l for l in section.splitlines() if l.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in r.strip("|").split("|")))) for r in rows[2:]]


def num(v, decimals, t):
    """v with `decimals` decimals, in the language's format: 2,048.5 or 2048,5."""
    s = f"{v:,.{decimals}f}"
    return s.replace(",", "\0").replace(".", t["decimal"]).replace("\0", t["thousands"])


def legend(x, y, families, t, vertical=False):
    """A square of each family's colour and its name, in a row (or a column)."""
    body = ""
    for family in families:
        label = t["families"][family]
        body += f'  <rect x="{x}" y="{y - 21}" width="26" height="26" fill="{COLOURS[family]}"/>\n'
        body += text(x + 36, y, label)
        if vertical:
            y += 36
        else:
            x += 36 + round(len(label) * 11.5) + 40  # DejaVu Sans at 22: about 11.3 units a character
    return body


def bars(title, items, unit_fmt, t, note=None, width=1160, families=None, row=50, bar=32):
    """Horizontal bars: items are (label, value, family). families: a legend
    under the title."""
    top, left, right = (110 if families else 70), 230, 200
    height = top + row * len(items) + (50 if note else 15)
    top_value = max(v for _, v, _ in items)
    body = text(10, 34, title, size=24, weight="bold")
    if families:
        body += legend(10, 80, families, t)
    for i, (label, value, family) in enumerate(items):
        middle = top + i * row + row / 2 - 3
        w = max(3, (width - left - right) * value / top_value)
        body += text(left - 14, middle + 7, t["names"].get(label, label), anchor="end")
        body += f'  <rect x="{left}" y="{middle - bar / 2:.1f}" width="{w:.1f}" height="{bar}" fill="{COLOURS[family]}"/>\n'
        body += text(left + w + 12, middle + 8, unit_fmt(value), weight="bold")
    if note:
        body += text(left, height - 18, note, fill="#444")
    return svg(width, height, title, body)


def memory(md, t):
    """The servers that held the most connections; 02 (FD_SETSIZE) in a note."""
    all_rows = table(md, "Idle connections")
    held = max(int(r["connections held"]) for r in all_rows)
    rows = [r for r in all_rows if int(r["connections held"]) == held]
    items = [(r["server"], float(r["bytes per idle connection"]), FAMILY[r["server"]]) for r in rows]
    kib = lambda b: f"{num(b / 1024, 1, t)} KiB" if b >= 1024 else f"{num(b, 0, t)} B"
    families = [f for f in COLOURS if any(family == f for _, _, family in items)]
    select = next((int(r["connections held"]) for r in all_rows if r["server"] == "02_select"), None)
    note = t["memory_note"].format(held=select) if select is not None and select < held else None
    return bars(t["memory"].format(held=held), items, kib, t, note=note, families=families)


def stalled(md, t):
    rows = table(md, "A stalled receiver")
    items = [(r["server"], float(r["peak RSS (MiB)"]), FAMILY[r["server"]]) for r in rows]
    # Compact rows: the slide has three lines of text under the chart.
    return bars(t["stalled"], items, lambda v: f"{num(v, 0 if v >= 100 else 1, t)} MiB", t, row=40, bar=28)


def cpu_bound(md, t):
    """The light client's p99 with the server on both cores (threads need the
    second one), from bench.md's CPU-bound table: its second p99 column."""
    section = md.split("\n## A CPU-bound handler", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in section.splitlines() if l.startswith("|")]
    p99 = [i for i, h in enumerate(rows[0]) if h == "p99"][-1]
    items = [(r[0], float(r[p99]), "ours" if "offload" not in r[0] else "node") for r in rows[2:] if r[p99] != "--"]
    return bars(t["cpu"], items, lambda v: f"{num(v, 1, t)} ms", t, note=t["cpu_note"])


def syscalls(md, t):
    """The epilogue's completion against readiness: system calls per message,
    from bench.md's completion table."""
    rows = table(md, "Epilogue: completion instead of readiness")
    items = [(r["server"], float(r["system calls per message"]), "floor" if r["server"] == "raw_epoll" else "ours")
             for r in rows if r["system calls per message"] != "--"]
    return bars(t["syscalls"], items, lambda v: num(v, 2, t), t, note=t["syscalls_note"])


def event_loop(t):
    # Drawn at 1160 units and shown at 1100 px: the 26-unit labels are about 25 px.
    L = t["loop"]
    body = '  <circle cx="580" cy="215" r="120" fill="none" stroke="#336" stroke-width="3" stroke-dasharray="10 6"/>\n'
    body += text(580, 212, L[0], size=30, anchor="middle", fill="#336")
    body += text(580, 248, L[1], size=26, anchor="middle", fill="#336")
    boxes = [(580, 40), (940, 215), (580, 390), (220, 215)]
    for (cx, cy), label in zip(boxes, L[2:]):
        body += f'  <rect x="{cx - 200}" y="{cy - 31}" width="400" height="62" rx="10" fill="#eef" stroke="#336" stroke-width="2"/>\n'
        body += text(cx, cy + 9, label, size=26, anchor="middle")
    body += '  <g stroke="#333" stroke-width="2.5" fill="none" marker-end="url(#arrow)">\n'
    body += ('    <path d="M782,40 Q930,50 940,182"/>\n    <path d="M940,248 Q930,380 782,390"/>\n'
             '    <path d="M378,390 Q230,380 220,248"/>\n    <path d="M220,182 Q230,50 378,40"/>\n  </g>\n')
    return svg(1160, 430, t["loop_title"], body)


def callbacks(t):
    L = t["cb"]
    body = ""
    top = [(20, L[0]), (200, L[1]), (380, L[2]), (590, L[3]), (790, L[4])]
    w = [150, 150, 180, 170, 150]
    for (x, label), bw in zip(top, w):
        body += f'  <rect x="{x}" y="40" width="{bw}" height="56" rx="8" fill="#eef" stroke="#336" stroke-width="2"/>\n'
        body += text(x + bw / 2, 76, label, anchor="middle")
    body += '  <rect x="380" y="250" width="180" height="56" rx="8" fill="#fee" stroke="#633" stroke-width="2"/>\n'
    body += text(470, 286, L[5], anchor="middle")
    body += '  <rect x="620" y="250" width="320" height="56" rx="8" fill="#fee" stroke="#633" stroke-width="2"/>\n'
    body += text(780, 286, L[6], anchor="middle")
    body += '  <g stroke="#333" stroke-width="2.5" fill="none" marker-end="url(#arrow)">\n'
    for x1, x2 in [(170, 198), (350, 378), (560, 588), (760, 788)]:
        body += f'    <path d="M{x1},68 L{x2},68"/>\n'
    body += '    <path d="M470,96 L470,248"/>\n    <path d="M560,278 L618,278"/>\n'
    # uv_write's completion comes back through the loop, which goes on
    # reading: the dashed arrow returns to on_readable.
    body += ('    <path d="M865,96 L865,158 Q865,172 851,172 L534,172 Q520,172 520,158 L520,99"'
             ' stroke-dasharray="6 5"/>\n  </g>\n')
    body += text(692, 160, L[9], anchor="middle", fill="#444")
    body += text(945, 215, L[7], anchor="end", fill="#444")
    body += text(250, 180, L[8], fill="#444")
    return svg(960, 330, t["cb_title"], body)


def coroutine(t):
    # Every label sits beside an arrow, never across one: the arrows at x =
    # 330 (suspend), 740 (resume) and 900 (suspend again).
    L = t["co"]
    body = text(20, 34, L[0], size=24, fill="#336", weight="bold")
    body += text(342, 312, L[1], size=24, fill="#336", weight="bold")
    body += '  <line x1="20" y1="60" x2="1140" y2="60" stroke="#ccc"/>\n  <line x1="20" y1="270" x2="1140" y2="270" stroke="#ccc"/>\n'
    body += '  <g stroke="#2e8540" stroke-width="10"><line x1="30" y1="90" x2="330" y2="90"/><line x1="740" y1="90" x2="900" y2="90"/></g>\n'
    body += '  <g stroke="#a03060" stroke-width="10"><line x1="330" y1="340" x2="740" y2="340"/><line x1="900" y1="340" x2="1130" y2="340"/></g>\n'
    body += ('  <g stroke="#333" stroke-width="2.5" fill="none" marker-end="url(#arrow)">\n'
             '    <path d="M330,96 L330,330"/>\n    <path d="M740,330 L740,100"/>\n    <path d="M900,96 L900,330"/>\n  </g>\n')
    body += text(342, 135, L[2])
    body += text(342, 165, L[3])
    body += text(728, 210, L[4], anchor="end")
    body += text(728, 240, L[5], anchor="end")
    body += text(912, 135, L[6])
    body += text(342, 385, L[7])
    return svg(1160, 410, t["co_title"], body)


def timeline(t):
    # The runs of `./workshop trace 01 work` and `02 work` (slides/trace_run.py):
    # each work span, on its thread's row, coloured by the client whose frame
    # it is (the on_frame span around it says which). Each run's clock starts
    # at its own first frame.
    lanes = []
    for name, title in [("01-work.json", t["tl_01"]), ("02-work.json", t["tl_02"])]:
        events = json.loads((ROOT / "slides/data" / name).read_text())
        frames = [e for e in events if e.get("ph") == "X" and e["name"] == "on_frame"]
        t0 = min(e["ts"] for e in frames) / 1000
        spans = []
        for w in (e for e in events if e.get("ph") == "X" and e["name"] == "work"):
            owner = next(f for f in frames if f["tid"] == w["tid"] and f["ts"] <= w["ts"] <= f["ts"] + f["dur"])
            spans.append((f'th{w["tid"]}', owner["args"]["client"], w["ts"] / 1000 - t0,
                          (w["ts"] + w["dur"]) / 1000 - t0))
        lanes.append((title, spans))
    t0 = 0
    end = max(s[3] for _, spans in lanes for s in spans)
    left, width = 120, 1160
    scale = (width - left - 30) / end
    colours = {1: COLOURS["ours"], 2: COLOURS["python"]}
    body = text(10, 32, t["tl_title"], size=24, weight="bold")
    y = 60
    for title, spans in lanes:
        body += text(left, y + 26, title, fill="#333", weight="bold")
        y += 40
        for th in sorted({s[0] for s in spans}):
            body += text(left - 14, y + 30, th, anchor="end")
            for lane, client, a, b in spans:
                if lane == th:
                    x = left + (a - t0) * scale
                    body += (f'  <rect x="{x:.1f}" y="{y + 6}" width="{max(2, (b - a) * scale):.1f}" height="34"'
                             f' fill="{colours[client]}" stroke="#fff" stroke-width="2"/>\n')
            y += 46
        y += 10
    body += f'  <line x1="{left}" y1="{y}" x2="{width - 30}" y2="{y}" stroke="#333"/>\n'
    # A tick every 2, 5, 10, 20 or 50 ms: a dozen labels at most, "100" and
    # "110" well apart.
    step = next(st for st in (2, 5, 10, 20, 50) if end / st <= 13)
    for ms in range(0, int(end) + 1, step):
        x = left + ms * scale
        body += f'  <line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 8}" stroke="#333"/>\n'
        body += text(x, y + 32, str(ms), anchor="middle")
    body += text(width - 30, y + 66, t["tl_axis"], anchor="end", fill="#444")
    for i, (client, colour) in enumerate(colours.items()):
        x = left + i * 200
        body += f'  <rect x="{x}" y="{y + 46}" width="26" height="26" fill="{colour}"/>\n'
        body += text(x + 36, y + 67, f'{t["client"]} {client}')
    return svg(width, y + 90, t["tl_title"], body)


def main():
    md = (ROOT / "bench/results/bench.md").read_text()
    for lang, t in T.items():
        for name, content in [("memory", memory(md, t)), ("stalled", stalled(md, t)), ("cpu-bound", cpu_bound(md, t)),
                              ("syscalls", syscalls(md, t)),
                              ("event-loop", event_loop(t)), ("callbacks", callbacks(t)),
                              ("coroutine", coroutine(t)), ("timeline", timeline(t))]:
            path = IMG / f"{name}.{lang}.svg"
            path.write_text(content)
            print(f"wrote {path.relative_to(ROOT)}")
            if lang == "en" and name in ("event-loop", "callbacks", "coroutine"):
                (IMG / f"{name}.svg").write_text(content)  # the stage READMEs show these
                print(f"wrote {(IMG / f'{name}.svg').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
