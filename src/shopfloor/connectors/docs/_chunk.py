"""Sections into chunks an embedding model reads whole: split at paragraphs, then sentences, then words,
each chunk at most ``max_chars`` (MiniLM reads 256 word pieces, about 1,000 characters of English)."""

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
    sections: list[Section], *, max_chars: int = 1000, max_chunks: int = 20_000
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in sections:
        heading = " > ".join(h for h in section.headings if h)
        current = ""
        for piece in _pieces(section.text, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                chunks.append(Chunk(heading=heading, text=current))
                current = piece
            else:
                current = f"{current}\n{piece}" if current else piece
        if current:
            chunks.append(Chunk(heading=heading, text=current))
        if len(chunks) >= max_chunks:
            return chunks[:max_chunks]
    return chunks
