"""Replace one `## ` section of docs/benchmarks.md, leaving the sections other benchmarks own."""
from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(title: str, lines: list[str], doc: Path = DOC) -> None:
    """`title` is the whole heading line ("## ..."); `lines` the section, heading included."""
    text = doc.read_text()
    start = text.find(title + "\n")
    body = "\n".join(lines).rstrip("\n") + "\n"
    if start >= 0:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + body + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    doc.write_text(text)
