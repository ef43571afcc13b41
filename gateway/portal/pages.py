"""Rendering the portal's HTML pages from Jinja2 templates (autoescaped).

Templates are looked up first in an optional override directory, then in the package's own
``templates/``; a theme can replace any single template (or ``base.html`` alone) and ship its
own stylesheet in ``static/``. Static files are addressed with a content hash (``?v=``) so they
can be cached without going stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

__all__ = ["PACKAGE_STATIC", "PACKAGE_TEMPLATES", "Pages"]

_HERE = Path(__file__).resolve().parent
PACKAGE_TEMPLATES = _HERE / "templates"
PACKAGE_STATIC = _HERE / "static"


class Pages:
    """The template environment of one portal."""

    def __init__(
        self,
        *,
        brand: str,
        templates_dir: Path | None = None,
        static_dirs: tuple[Path, ...] = (PACKAGE_STATIC,),
    ) -> None:
        search_path = [str(PACKAGE_TEMPLATES)]
        if templates_dir is not None:
            search_path.insert(0, str(templates_dir))
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search_path),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._versions = _static_versions(static_dirs)
        self._env.globals.update(brand=brand, static=self.static)

    def static(self, name: str) -> str:
        """The cache-busting address of a static file."""
        version = self._versions.get(name)
        suffix = f"?v={version}" if version else ""
        return f"/static/{name}{suffix}"

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The page ``template`` rendered with ``context``."""
        body = self._env.get_template(template).render(context)
        return HTMLResponse(body, status_code=status_code, headers=headers)


def _static_versions(directories: tuple[Path, ...]) -> dict[str, str]:
    """A short content hash per static file name; the first directory listing a name wins."""
    versions: dict[str, str] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.name not in versions:
                versions[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return versions
