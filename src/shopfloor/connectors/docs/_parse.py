"""Documents into sections: HTML, Markdown, PDF and text, each parser in the ``parsers()`` registry.

A document is untrusted: its size is bounded before parsing, a parser that fails names the file, and
nothing is executed or fetched (no scripts, no remote resources, no entity expansion beyond the
parsers' own limits). A section is a heading path and its text; chunking (``_chunk.py``) splits long
sections further.
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from shopfloor._registry import Registry
from shopfloor.errors import ConnectorError

__all__ = ["MAX_DOCUMENT_BYTES", "Parsed", "Parser", "Section", "parser_for", "parsers"]

#: bytes of one document read at most (a larger one is skipped, reported)
MAX_DOCUMENT_BYTES = 20 << 20
#: characters of text one document may expand to (a PDF or zip bomb stops here)
MAX_TEXT_CHARS = 5_000_000
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n{3,}")


@dataclass(frozen=True, kw_only=True)
class Section:
    #: the headings above this text, outermost first
    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True, kw_only=True)
class Parsed:
    title: str
    sections: list[Section]


def clean(text: str) -> str:
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


class Parser(ABC):
    suffixes: ClassVar[tuple[str, ...]]

    @abstractmethod
    def parse(self, data: bytes, name: str) -> Parsed:
        """The sections of a document (``name`` for its title and errors)."""


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    text = data.decode("latin-1")  # every byte is a character: a wrong guess, never a failure
    if sum(ch.isprintable() or ch.isspace() for ch in text[:4000]) < 0.9 * min(len(text), 4000):
        raise ConnectorError(f"{name}: not text in a known encoding (binary?)")
    return text


class TextParser(Parser):
    suffixes = (".txt", ".text", ".rst")

    def parse(self, data: bytes, name: str) -> Parsed:
        text = clean(_decode(data, name))
        return Parsed(title=Path(name).stem, sections=[Section(headings=(), text=text)] if text else [])


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class MarkdownParser(Parser):
    suffixes = (".md", ".markdown")

    def parse(self, data: bytes, name: str) -> Parsed:
        sections: list[Section] = []
        path: list[str] = []
        lines: list[str] = []
        fenced = False
        title = ""

        def flush() -> None:
            text = clean("\n".join(lines))
            if text:
                sections.append(Section(headings=tuple(path), text=text))
            lines.clear()

        for line in _decode(data, name).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            found = None if fenced else _MD_HEADING.match(line)
            if found:
                flush()
                level, heading = len(found.group(1)), found.group(2)[:200]
                del path[level - 1 :]
                path.extend([""] * (level - 1 - len(path)))
                path.append(heading)
                title = title or heading
            else:
                lines.append(line)
        flush()
        return Parsed(title=title or Path(name).stem, sections=sections)


class HtmlParser(Parser):
    """Sections from ``h1``-``h6``; scripts, styles, navigation and forms dropped (selectolax). Where a
    page marks its content (``<main>``, ``role="main"``: Sphinx's pages do), only that is read: the
    sidebars, breadcrumbs and search boxes around it are the same on every page of a site, and came
    back as passages of their own for any question."""

    suffixes = (".html", ".htm", ".xhtml")
    _DROP = (
        "script, style, noscript, nav, header, footer, form, iframe, svg, template, "
        '[role="navigation"], [role="search"]'
    )

    def parse(self, data: bytes, name: str) -> Parsed:
        from selectolax.lexbor import LexborHTMLParser

        tree = LexborHTMLParser(_decode(data, name))
        for node in tree.css(self._DROP):
            node.decompose()
        title_node = tree.css_first("title")
        title = clean(title_node.text()) if title_node else ""
        body = tree.css_first('main, [role="main"]') or tree.css_first("body") or tree.root
        if body is None:
            return Parsed(title=title or Path(name).stem, sections=[])
        sections: list[Section] = []
        path: list[str] = []
        lines: list[str] = []

        def flush() -> None:
            text = clean("\n".join(lines))
            if text:
                sections.append(Section(headings=tuple(path), text=text))
            lines.clear()

        blocks = "h1, h2, h3, h4, h5, h6, p, pre, li, dt, dd, td, th, blockquote"
        for node in body.css(blocks):
            tag = node.tag or ""
            if tag[:1] == "h" and tag[1:].isdigit():
                flush()
                level = int(tag[1])
                heading = clean(node.text(separator=" "))[:200].rstrip("¶ ")
                del path[level - 1 :]
                path.extend([""] * (level - 1 - len(path)))
                path.append(heading)
            elif (
                node.parent is not None and node.parent.tag in ("li", "blockquote", "dd") and node.tag == "p"
            ):
                continue  # its list item or quote carries its text
            else:
                lines.append(node.text(separator=" " if tag != "pre" else ""))
        flush()
        return Parsed(title=title or (path[0] if path else Path(name).stem), sections=sections)


class PdfParser(Parser):
    """One section per page (pypdf); a truncated or encrypted PDF is an error naming the file."""

    suffixes = (".pdf",)

    def parse(self, data: bytes, name: str) -> Parsed:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError

        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise ConnectorError(f"{name}: the PDF is encrypted")
            sections: list[Section] = []
            total = 0
            for number, page in enumerate(reader.pages, 1):
                text = clean(page.extract_text() or "")
                total += len(text)
                if total > MAX_TEXT_CHARS:
                    raise ConnectorError(f"{name}: over {MAX_TEXT_CHARS:,} characters of text (a PDF bomb?)")
                if text:
                    sections.append(Section(headings=(f"page {number}",), text=text))
            meta = reader.metadata
            title = str(meta.title) if meta is not None and meta.title else Path(name).stem
        except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
            raise ConnectorError(
                f"{name}: not a readable PDF ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        return Parsed(title=title[:200], sections=sections)


def parsers() -> Registry[type[Parser]]:
    """Document parsers by kind (a fresh registry: extend your own copy)."""
    return Registry(
        "document parser",
        {"text": TextParser, "markdown": MarkdownParser, "html": HtmlParser, "pdf": PdfParser},
    )


def parser_for(path: Path, registry: Registry[type[Parser]] | None = None) -> Parser | None:
    """The parser of ``path`` by its suffix, or None for a file no parser reads."""
    registry = registry if registry is not None else parsers()
    suffix = path.suffix.lower()
    for name in registry.names():
        parser = registry.get(name)
        if suffix in parser.suffixes:
            return parser()
    return None
