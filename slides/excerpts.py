#!/usr/bin/env python3
"""Code on the slides comes from the real sources, by named regions.

In a source file:             In a deck:
    // ANCHOR: accept-loop        <!-- excerpt: 01_blocking/server.cpp#accept-loop -->
    ...code...                    ```cpp
    // ANCHOR_END: accept-loop    ...the same code...
                                  ```

    python3 slides/excerpts.py           # check: exit 1 on any drift
    python3 slides/excerpts.py --update  # rewrite the decks' code from the sources

The check fails when an excerpt differs from its source region, names a file
or region that does not exist, when a region no deck uses, when the decks do
not show the same excerpts, when an excerpt line is too long for a slide, or an excerpt has more
than MAX_LINES lines -- or when what they say the runtime weighs is off.
"""
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECKS = [ROOT / "slides/talk.en.md", ROOT / "slides/talk.es.md"]
# Guides that quote code the same way, without a slide's limits: the coro/
# library's reading path.
GUIDES = [ROOT / "04_coroutines/coro/README.md"]
GUIDE_MAX_LINES = 40
SOURCES = ["01_blocking", "02_select", "03_libuv_callbacks", "04_coroutines", "04_coroutines/coro", "common"]
# The decks set code at 20 px on a 1280x720 slide. DejaVu Sans Mono (what
# chromium renders "monospace" with on Debian) advances 12.0 px a character
# at 20 px, and a code block's inner width is 1280 - 2 x 50 (slide padding)
# - 2 x 16 (block padding) = 1148 px: 95 characters. 92 leaves a margin; the
# browser test checks that nothing is shrunk below 20 px or clipped.
MAX_LINE = 92
MAX_LINES = 12  # an excerpt is the heart of a thing, not a file

# Measured tables (bench/results/bench.md) come in as Markdown, not as code:
#   <!-- include: bench/results/bench.md#summary -->
#   ...the table...
#   <!-- end include -->
INCLUDE = re.compile(r"<!-- include: (?P<file>[^#\s]+)#(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- end include -->", re.S)
MD_ANCHOR = re.compile(r"^<!-- ANCHOR(?P<end>_END)?: (?P<name>[\w-]+) -->$")
INCLUDED = ["bench/results/bench.md", "slides/data/01-work.md"]

# What the decks and the stage README say the runtime weighs must stay
# within 10% of what coro/ holds (comments included).
SIZE_CLAIMS = [
    (ROOT / "slides/talk.en.md", r"runtime is about (\d+) lines"),
    (ROOT / "slides/talk.es.md", r"runtime tiene unas (\d+)\s+líneas"),
    (ROOT / "04_coroutines/README.md", r"about (\d+) lines with comments"),
    (ROOT / "04_coroutines/coro/README.md", r"about (\d+) lines with comments"),
]


def size_problems():
    actual = sum(len(p.read_text().splitlines()) for p in (ROOT / "04_coroutines/coro").glob("*.[ch]pp"))
    problems = []
    for path, pattern in SIZE_CLAIMS:
        m = re.search(pattern, path.read_text())
        if m is None:
            problems.append(f"{path.relative_to(ROOT)}: no statement of the runtime's size")
        elif abs(int(m[1]) - actual) > actual / 10:
            problems.append(f"{path.relative_to(ROOT)}: says the runtime is {m[1]} lines; coro/ has {actual}")
    # And coro/README.md's count of code lines (neither blank nor only a comment).
    code = sum(1 for p in (ROOT / "04_coroutines/coro").glob("*.[ch]pp") for line in p.read_text().splitlines()
               if not re.match(r"^\s*(//.*)?$", line))
    m = re.search(r"([\d,]+) lines are code", (ROOT / "04_coroutines/coro/README.md").read_text())
    if m is None or abs(int(m[1].replace(",", "")) - code) > code / 10:
        problems.append(f"04_coroutines/coro/README.md: says {m[1] if m else 'nothing of'} code lines; coro/ has {code}")
    return problems


EXCERPT = re.compile(r"<!-- excerpt: (?P<file>[^#\s]+)#(?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<code>.*?)```",
                     re.S)
ANCHOR = re.compile(r"^\s*// ANCHOR(?P<end>_END)?: (?P<name>[\w-]+)\s*$")


def regions():
    """(file, name) -> code, from every ANCHOR ... ANCHOR_END pair."""
    found = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).glob("*.[ch]pp")):
            rel = path.relative_to(ROOT).as_posix()
            open_regions = {}
            for line in path.read_text().splitlines():
                m = ANCHOR.match(line)
                if m and not m["end"]:
                    open_regions[m["name"]] = []
                elif m:
                    lines = open_regions.pop(m["name"], None)
                    if lines is None:
                        sys.exit(f"{rel}: ANCHOR_END: {m['name']} without its ANCHOR")
                    found[(rel, m["name"])] = textwrap.dedent("\n".join(lines)).strip("\n") + "\n"
                else:
                    for lines in open_regions.values():
                        lines.append(line)
            if open_regions:
                sys.exit(f"{rel}: ANCHOR without ANCHOR_END: {', '.join(open_regions)}")
    return found


def md_regions():
    found = {}
    for rel in INCLUDED:
        path = ROOT / rel
        if not path.exists():
            continue
        current, lines = None, []
        for line in path.read_text().splitlines():
            m = MD_ANCHOR.match(line)
            if m and not m["end"]:
                current, lines = m["name"], []
            elif m and current == m["name"]:
                found[(rel, current)] = "\n".join(lines).strip("\n") + "\n"
                current = None
            elif current:
                lines.append(line)
    return found


def main():
    update = "--update" in sys.argv[1:]
    sources = regions()
    problems, used, per_deck = [], set(), {}
    for deck in DECKS + GUIDES:
        text = deck.read_text()
        max_lines, max_line = (MAX_LINES, MAX_LINE) if deck in DECKS else (GUIDE_MAX_LINES, 100)
        names = []

        def replace(m):
            key = (m["file"], m["name"])
            names.append(key)
            used.add(key)
            code = sources.get(key)
            if code is None:
                problems.append(f"{deck.name}: unknown excerpt {key[0]}#{key[1]}")
                return m.group(0)
            if len(code.splitlines()) > max_lines:
                problems.append(f"{deck.name}: {key[0]}#{key[1]}: {len(code.splitlines())} lines, more than {max_lines}")
            for line in code.splitlines():
                if len(line) > max_line:
                    problems.append(f"{deck.name}: {key[0]}#{key[1]}: line too long ({len(line)} > {max_line})")
            if m["code"] != code:
                if not update:
                    problems.append(f"{deck.name}: excerpt {key[0]}#{key[1]} differs from its source")
                return f"<!-- excerpt: {key[0]}#{key[1]} -->\n```{m['lang']}\n{code}```"
            return m.group(0)

        new_text = EXCERPT.sub(replace, text)
        tables = md_regions()

        def include(m):
            key = (m["file"], m["name"])
            names.append(key)
            body = tables.get(key)
            if body is None:
                problems.append(f"{deck.name}: unknown include {key[0]}#{key[1]}")
                return m.group(0)
            if m["body"] != body:
                if not update:
                    problems.append(f"{deck.name}: {key[0]}#{key[1]} differs from the results")
                return f"<!-- include: {key[0]}#{key[1]} -->\n{body}<!-- end include -->"
            return m.group(0)

        new_text = INCLUDE.sub(include, new_text)
        if deck in DECKS:
            per_deck[deck.name] = names
        if update and new_text != text:
            deck.write_text(new_text)
            print(f"updated {deck.relative_to(ROOT)}")
    for key in sorted(set(sources) - used):
        problems.append(f"{key[0]}: region {key[1]} is used by no deck or guide")
    decks = list(per_deck.values())
    if any(d != decks[0] for d in decks[1:]):
        problems.append("the decks do not show the same excerpts in the same order")
    problems += size_problems()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(used)} excerpts in {len(DECKS)} decks and {len(GUIDES)} guide match their sources")


if __name__ == "__main__":
    main()
