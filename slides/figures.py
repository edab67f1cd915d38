#!/usr/bin/env python3
"""Draws the decks' pictures, in English and in Spanish, as SVG.

    python3 slides/figures.py      # writes slides/img/*.en.svg and *.es.svg

The charts take their numbers from the measurements, never from this file:
  bench/results/bench.md     idle connections, the stalled receiver
  slides/data/cpu-bound.txt  a CPU-bound handler (slides/measure.sh)
  slides/data/trace-*.txt    the timeline (slides/trace_run.py)
The diagrams (the event loop, the callback flow, a coroutine suspending) are
drawn here too, so that both languages share one layout. Every label is 20
units or more in a picture the slides show at 1:1 or larger, which the
browser test checks (18 px at least), with no two labels overlapping.
"""
import re
import statistics
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
        "memory": "Server memory per idle connection, 19000 connections held",
        "memory_note": "02 select: stops at 1000 (FD_SETSIZE = 1024)",
        "stalled": "Peak server memory while one client never reads (1 GiB relayed)",
        "cpu": "A light client's p99 round trip while a heavy one sends 1 ms CPU frames",
        "offload": "--offload",
        "loop_title": "The event loop",
        "loop": ["the loop", "(one thread)", "wait: epoll / select", "ready: who can go?",
                 "run its callback", "it starts more I/O"],
        "cb_title": "The callback flow of stage 03",
        "cb": ["accept", "alloc", "on_readable", "decode", "uv_write", "close_client", "close callback: free",
               "on_write_done: the buffer may go", "EOF, error, limit"],
        "co_title": "A coroutine suspends at co_await and the loop resumes it",
        "co": ["handle_connection (one per client)", "event loop (libuv)", "co_await frames.next()",
               "suspends: back to the loop", "bytes arrived:", "resume here", "co_await again",
               "other clients' callbacks and coroutines run here"],
        "tl_title": "Two clients, three frames each, --work on every frame: measured with --trace",
        "tl_01": "01 threads: a thread per client, both frames in progress at once",
        "tl_02": "02 select: one thread, the frames take turns",
        "tl_axis": "ms since the first frame",
        "client": "client",
    },
    "es": {
        "memory": "Memoria del servidor por conexión inactiva, con 19000 conexiones",
        "memory_note": "02 select: se para en 1000 (FD_SETSIZE = 1024)",
        "stalled": "Pico de memoria del servidor con un cliente que nunca lee (1 GiB)",
        "cpu": "p99 de ida y vuelta de un cliente ligero junto a uno pesado (1 ms de CPU por trama)",
        "offload": "--offload",
        "loop_title": "El bucle de eventos",
        "loop": ["el bucle", "(un hilo)", "esperar: epoll / select", "listo: ¿quién sigue?",
                 "ejecutar su callback", "lanza más E/S"],
        "cb_title": "El flujo de callbacks de la etapa 03",
        "cb": ["accept", "alloc", "on_readable", "decodificar", "uv_write", "close_client",
               "callback de cierre: liberar", "on_write_done: se suelta el búfer", "EOF, error, límite"],
        "co_title": "Una corrutina se suspende en co_await y el bucle la reanuda",
        "co": ["handle_connection (una por cliente)", "bucle de eventos (libuv)", "co_await frames.next()",
               "se suspende: vuelve al bucle", "llegaron bytes:", "sigue aquí", "co_await otra vez",
               "aquí corren los callbacks y corrutinas de otros clientes"],
        "tl_title": "Dos clientes, tres tramas cada uno, --work en cada trama: medido con --trace",
        "tl_01": "01 hilos: un hilo por cliente, las dos tramas en curso a la vez",
        "tl_02": "02 select: un hilo, las tramas se turnan",
        "tl_axis": "ms desde la primera trama",
        "client": "cliente",
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


def bars(title, items, unit_fmt, note=None, width=1160):
    """Horizontal bars: items are (label, value, family)."""
    row, top, left, right = 50, 70, 230, 200
    height = top + row * len(items) + (50 if note else 15)
    top_value = max(v for _, v, _ in items)
    body = text(10, 34, title, size=24, weight="bold")
    for i, (label, value, family) in enumerate(items):
        y = top + i * row
        w = max(3, (width - left - right) * value / top_value)
        body += text(left - 14, y + 28, label, anchor="end")
        body += f'  <rect x="{left}" y="{y + 6}" width="{w:.1f}" height="32" fill="{COLOURS[family]}"/>\n'
        body += text(left + w + 12, y + 30, unit_fmt(value), weight="bold")
    if note:
        body += text(left, height - 18, note, fill="#444")
    return svg(width, height, title, body)


def kib(b):
    return f"{b / 1024:.1f} KiB" if b >= 1024 else f"{b:.0f} B"


def memory(md, t):
    rows = [r for r in table(md, "Idle connections") if r["connections held"] == "19000"]
    items = [(r["server"], float(r["bytes per idle connection"]), FAMILY[r["server"]]) for r in rows]
    return bars(t["memory"], items, kib, note=t["memory_note"])


def stalled(md, t):
    rows = table(md, "A stalled receiver")
    items = [(r["server"], float(r["peak RSS (MiB)"]), FAMILY[r["server"]]) for r in rows]
    return bars(t["stalled"], items, lambda v: f"{v:,.0f} MiB" if v >= 100 else f"{v:.1f} MiB")


def cpu_bound(t):
    runs = {}
    for line in (ROOT / "slides/data/cpu-bound.txt").read_text().splitlines():
        if line.startswith("#") or "p99_ms=" not in line:
            continue
        label, fields, _ = line.split("|")
        runs.setdefault(label, []).append(float(re.search(r"p99_ms=([\d.]+)", fields)[1]))
    items = [(label, statistics.median(v), "ours" if "offload" not in label else "node")
             for label, v in runs.items()]
    return bars(t["cpu"], items, lambda v: f"{v:.1f} ms")


def event_loop(t):
    L = t["loop"]
    body = '  <circle cx="480" cy="250" r="150" fill="none" stroke="#336" stroke-width="3" stroke-dasharray="10 6"/>\n'
    body += text(480, 245, L[0], size=28, anchor="middle", fill="#336")
    body += text(480, 280, L[1], size=22, anchor="middle", fill="#336")
    boxes = [(480, 40), (790, 250), (480, 460), (170, 250)]
    for (cx, cy), label in zip(boxes, L[2:]):
        body += f'  <rect x="{cx - 150}" y="{cy - 28}" width="300" height="56" rx="10" fill="#eef" stroke="#336" stroke-width="2"/>\n'
        body += text(cx, cy + 8, label, anchor="middle")
    body += '  <g stroke="#333" stroke-width="2.5" fill="none" marker-end="url(#arrow)">\n'
    body += ('    <path d="M632,50 Q770,80 790,220"/>\n    <path d="M790,280 Q770,420 632,450"/>\n'
             '    <path d="M328,450 Q190,420 170,280"/>\n    <path d="M170,220 Q190,80 328,50"/>\n  </g>\n')
    return svg(960, 500, t["loop_title"], body)


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
    # uv_write's completion comes back to the loop, below the row: it ends
    # under uv_write's own box, not in "decode".
    body += '    <path d="M865,96 L865,150 Q865,170 845,170 L700,170" stroke-dasharray="6 5"/>\n  </g>\n'
    body += text(945, 215, L[7], anchor="end", fill="#444")
    body += text(250, 180, L[8], fill="#444")
    return svg(960, 330, t["cb_title"], body)


def coroutine(t):
    L = t["co"]
    body = text(20, 34, L[0], size=24, fill="#336", weight="bold")
    body += text(20, 300, L[1], size=24, fill="#336", weight="bold")
    body += '  <line x1="20" y1="60" x2="940" y2="60" stroke="#ccc"/>\n  <line x1="20" y1="270" x2="940" y2="270" stroke="#ccc"/>\n'
    body += '  <g stroke="#2e8540" stroke-width="10"><line x1="30" y1="90" x2="200" y2="90"/><line x1="500" y1="90" x2="680" y2="90"/></g>\n'
    body += '  <g stroke="#a03060" stroke-width="10"><line x1="200" y1="340" x2="500" y2="340"/><line x1="680" y1="340" x2="930" y2="340"/></g>\n'
    body += ('  <g stroke="#333" stroke-width="2.5" fill="none" marker-end="url(#arrow)">\n'
             '    <path d="M200,96 L200,330"/>\n    <path d="M500,330 L500,100"/>\n    <path d="M680,96 L680,330"/>\n  </g>\n')
    body += text(212, 135, L[2])
    body += text(212, 165, L[3])
    body += text(490, 200, L[4], anchor="end")
    body += text(490, 230, L[5], anchor="end")
    body += text(692, 135, L[6])
    body += text(20, 385, L[7])
    return svg(960, 400, t["co_title"], body)


def timeline(t):
    lanes = []
    for name, title in [("trace-01.txt", t["tl_01"]), ("trace-02.txt", t["tl_02"])]:
        spans, start = [], {}
        for line in (ROOT / "slides/data" / name).read_text().splitlines():
            m = re.match(r"\[trace\s+([\d.]+)ms (th\d+)\] (\w+)\s+client=(\d+)", line)
            if not m:
                continue
            ms, th, what, client = float(m[1]), m[2], m[3], int(m[4])
            if what == "frame":
                start[(th, client)] = ms
            elif what == "work" and (th, client) in start:
                spans.append((th, client, start.pop((th, client)), ms))
        lanes.append((title, spans))
    t0 = min(s[2] for _, spans in lanes for s in spans)
    end = max(s[3] for _, spans in lanes for s in spans) - t0
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
    step = 2 if end < 16 else 5
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
        for name, content in [("memory", memory(md, t)), ("stalled", stalled(md, t)), ("cpu-bound", cpu_bound(t)),
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
