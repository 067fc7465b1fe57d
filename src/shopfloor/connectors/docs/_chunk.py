"""Sections into chunks an embedding model reads whole: split at paragraphs, then sentences, then words,
each chunk at most ``max_chars`` (MiniLM reads 256 word pieces, about 1,000 characters of English).

A chunk shorter than ``min_chars`` at the end of a section (a heading over one line of text, the tail of
a long section) takes in the next section when that fits, the next section's heading as a line of its
text: reference pages are many small sections (a function, its one-line summary), and one chunk each
was a third of the chunks for a tenth of the text, each too short to be an answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shopfloor.connectors.docs._parse import Section

__all__ = ["Chunk", "chunk_sections"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, kw_only=True)
class Chunk:
    heading: str
    text: str


def _pieces(text: str, limit: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    for splitter in (re.compile(r"\n\s*\n"), _SENTENCE, re.compile(r"\s+")):
        parts = [p for p in splitter.split(text) if p.strip()]
        if len(parts) > 1:
            return [piece for part in parts for piece in _pieces(part, limit)]
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def chunk_sections(
    sections: list[Section], *, max_chars: int = 1000, min_chars: int = 300, max_chunks: int = 20_000
) -> list[Chunk]:
    chunks: list[Chunk] = []
    heading, current = "", ""
    for section in sections:
        path = " > ".join(h for h in section.headings if h)
        pieces = _pieces(section.text, max_chars)
        if not pieces:
            continue
        title = next((h for h in reversed(section.headings) if h), "")
        carried = f"{current}\n{title}" if title else current
        if current and len(current) < min_chars and len(carried) + 1 + len(pieces[0]) <= max_chars:
            current = carried  # the short chunk goes on into this section, under its own heading
        else:
            if current:
                chunks.append(Chunk(heading=heading, text=current))
            heading, current = path, ""
        for piece in pieces:
            if current and len(current) + 1 + len(piece) > max_chars:
                chunks.append(Chunk(heading=heading, text=current))
                heading, current = path, piece
            else:
                current = f"{current}\n{piece}" if current else piece
        if len(chunks) >= max_chunks:
            return chunks[:max_chunks]
    if current:
        chunks.append(Chunk(heading=heading, text=current))
    return chunks[:max_chunks]
