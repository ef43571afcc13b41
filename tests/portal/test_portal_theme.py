"""A theme directory overrides templates and static files one by one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.portal.support import Gateway


@pytest.fixture
def theme_dir(tmp_path: Path) -> Path:
    theme = tmp_path / "theme"
    (theme / "templates").mkdir(parents=True)
    (theme / "static").mkdir()
    (theme / "templates" / "base.html").write_text(
        (Path(__file__).parents[2] / "gateway/portal/templates/base.html")
        .read_text()
        .replace("{{ brand }}</span>", "ACME Corp</span>")
        .replace(
            "\"{{ static('portal.css') }}\">",
            "\"{{ static('portal.css') }}\">"
            '\n  <link rel="stylesheet" href="{{ static(\'acme.css\') }}">',
        )
    )
    (theme / "static" / "acme.css").write_text(":root { --primary: #8a2be2; }\n")
    return theme


def test_theme_templates_and_static_files_win(gateway: Gateway) -> None:
    page = gateway.client.get("/").text
    assert "ACME Corp</span>" in page
    assert "<h1>Sign in</h1>" in page  # login.html still comes from the package
    href = re.search(r'href="(/static/acme\.css\?v=[0-9a-f]+)"', page)
    assert href is not None
    assert "#8a2be2" in gateway.client.get(href.group(1)).text
    # The package's own files are still served.
    assert gateway.client.get("/static/portal.css").status_code == 200
