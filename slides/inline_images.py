#!/usr/bin/env python3
"""Makes a rendered deck self-contained: local images become data: URIs.

    python3 slides/inline_images.py slides/talk.en.html [...]

Marp links the images it finds in the Markdown; after this the HTML file can
be mailed or opened from anywhere, with no other file and no network.
"""
import base64
import re
import sys
from pathlib import Path

TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg"}


def inline(html_path):
    html_path = Path(html_path)
    html = html_path.read_text()

    def replace(m):
        src = m["src"]
        if ":" in src:  # data:, http:, file: -- leave alone
            return m.group(0)
        image = (html_path.parent / src).resolve()
        kind = TYPES.get(image.suffix)
        if not kind or not image.exists():
            sys.exit(f"{html_path}: cannot inline {src}")
        data = base64.b64encode(image.read_bytes()).decode()
        return f'<img src="data:{kind};base64,{data}"'

    html = re.sub(r'<img src="(?P<src>[^"]+)"', replace, html)
    html_path.write_text(html)


for path in sys.argv[1:]:
    inline(path)
