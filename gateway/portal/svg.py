"""Checking an SVG image before it is placed inline in a page.

The QR code comes from our own code (segno), but it goes into the page as markup, past
autoescaping; so it is held to a small allowlist of elements and attributes first. Anything
else (a script, an event handler, a ``style`` attribute the CSP would block, an external
reference) and the image is not shown at all.
"""

from __future__ import annotations

from html.parser import HTMLParser

from markupsafe import Markup

__all__ = ["inline_svg"]

_ELEMENTS = frozenset({"svg", "title", "desc", "g", "path", "rect"})
_ATTRIBUTES = frozenset(
    {
        "class",
        "d",
        "fill",
        "height",
        "role",
        "aria-label",
        "shape-rendering",
        "stroke",
        "transform",
        "version",
        "viewbox",
        "width",
        "x",
        "y",
        "xmlns",
    }
)
_MAX_LENGTH = 200_000


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ok = True
        self.roots = 0
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth == 0:
            self.roots += 1
            self.ok &= tag == "svg"
        self.depth += 1
        self.ok &= tag in _ELEMENTS and all(name in _ATTRIBUTES for name, _ in attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.depth -= 1

    def handle_endtag(self, tag: str) -> None:
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        self.ok &= self.depth > 0 or not data.strip()

    def handle_comment(self, data: str) -> None:
        self.ok = False

    def handle_decl(self, decl: str) -> None:
        self.ok = False

    def handle_pi(self, data: str) -> None:
        self.ok = False

    def unknown_decl(self, data: str) -> None:
        self.ok = False


def inline_svg(svg: str, *, label: str) -> Markup | None:
    """``svg`` as markup for a template, labelled for screen readers; None if it is unsafe."""
    if len(svg) > _MAX_LENGTH or not svg.lstrip().startswith("<svg"):
        return None
    checker = _Checker()
    checker.feed(svg)
    checker.close()
    if not checker.ok or checker.roots != 1 or checker.depth != 0:
        return None
    opening = svg.lstrip()[len("<svg") :]
    # Checked against the allowlist above; the label is escaped by format().
    checked = Markup(opening)  # noqa: S704
    return Markup('<svg role="img" aria-label="{}"').format(label) + checked
