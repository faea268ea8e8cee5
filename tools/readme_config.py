"""Regenerate the README's config table from the schema: `python tools/readme_config.py`.

Replaces the text between `<!-- config-reference:start -->` and `<!-- config-reference:end -->`
with `synccp config --format markdown`; tests/test_config_reference.py fails until this is run
after a config key, default or meaning changes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from synccp.config_reference import reference  # noqa: E402

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text()
    pattern = re.compile(re.escape(START) + r"\n.*?\n" + re.escape(END), re.S)
    if not pattern.search(text):
        print(f"{path}: no {START} ... {END} markers", file=sys.stderr)
        return 2
    path.write_text(pattern.sub(lambda _: f"{START}\n{reference('markdown')}\n{END}", text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
