"""Extract the example manifests of KubeVirt's user guide (YAML blocks of its markdown) into files.

The user guide (github.com/kubevirt/user-guide) has no example files of its own: its manifests are
fenced ``yaml`` blocks in ``docs/**/*.md``. A block is kept when it parses and every document in it
is a whole object (``apiVersion``, ``kind`` and ``metadata.name``); fragments, shell sessions and
blocks that do not parse are left out. Each kept block is written unmodified (only the fence's
indentation removed) to ``OUT/<doc path, '/' as '-'>-<n>.yaml``, ``n`` counting the kept blocks of
that page from 1.

Usage: python scripts/user_guide_manifests.py USER_GUIDE_CHECKOUT OUT
(OUT is tests/data/upstream/kubevirt-user-guide; its SOURCE.md is written by hand).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```ya?ml[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)


def _whole_object(document: Any) -> bool:
    if not isinstance(document, dict) or "apiVersion" not in document or "kind" not in document:
        return False
    metadata = document.get("metadata")
    return isinstance(metadata, dict) and bool(metadata.get("name"))


def manifests(markdown: str) -> list[str]:
    """The blocks of one page that are whole manifests, as text."""
    kept: list[str] = []
    for match in _FENCE.finditer(markdown):
        indent = match.group("indent")
        lines = match.group("body").split("\n")
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        try:
            documents = [d for d in yaml.safe_load_all(body) if d is not None]
        except yaml.YAMLError:
            continue
        if documents and all(_whole_object(d) for d in documents):
            kept.append(body)
    return kept


def main(checkout: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        stale.unlink()
    written = 0
    for page in sorted((checkout / "docs").rglob("*.md")):
        stem = str(page.relative_to(checkout / "docs").with_suffix("")).replace("/", "-")
        for number, body in enumerate(manifests(page.read_text()), start=1):
            (out / f"{stem}-{number}.yaml").write_text(body)
            written += 1
    print(f"{written} manifests written to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
