#!/usr/bin/env python3
"""Records the traces the timeline slide draws, with the recorder a learner
uses (trace/record.py, scenario `work`: two clients, three frames each, 20 ms
of CPU per frame), against stage 01 (a thread per client) and stage 02 (one
thread, select()):

    python3 slides/trace_run.py    # writes slides/data/01-work.json, 02-work.json (and .txt)
    python3 slides/figures.py && python3 slides/excerpts.py --update   # then the decks

The .json files are what `./workshop trace 01 work` writes (slides/figures.py
draws the slide from them); the .txt files are the same runs' --trace lines,
for the backup slide (01-work.md: the lines it quotes).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trace"))
import record  # noqa: E402

if __name__ == "__main__":
    for stage in ("01", "02"):
        path, events, _ = record.record(stage, "work", ROOT / "build", ROOT / "slides/data", text=True)
        bad = record.problems(events)
        if bad:
            raise SystemExit(f"{path}: {bad[0]}")
        print(f"{path.relative_to(ROOT)}: {len(events)} events", file=sys.stderr)
    # The backup slide's lines: 01's first two frames and their work, by
    # two threads at once (slides/excerpts.py --update puts them in the decks).
    lines = (ROOT / "slides/data/01-work.txt").read_text().splitlines()
    frames = [l for l in lines if "] frame " in l][:2]
    works = [l for l in lines if "] work " in l][:2]
    (ROOT / "slides/data/01-work.md").write_text(
        "<!-- ANCHOR: backup -->\n```text\n" + "\n".join(frames + works) + "\n```\n<!-- ANCHOR_END: backup -->\n")
