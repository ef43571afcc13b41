from __future__ import annotations

import pytest

from gateway.identity.ldap.filters import escape_filter_value, filter_problem, first_rdn, render


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("john", "john"),
        ("*", "\\2a"),
        (")(uid=*", "\\29\\28uid=\\2a"),
        ("a\\b", "a\\5cb"),
        ("nul\x00", "nul\\00"),
        ("o'brien*(x)\\y", "o'brien\\2a\\28x\\29\\5cy"),
        ("Zoë", "Zoë"),
    ],
)
def test_escape_filter_value(raw: str, escaped: str) -> None:
    assert escape_filter_value(raw) == escaped


def test_render_escapes_every_value_and_keeps_the_filter_valid() -> None:
    template = "(&(uid={input})(objectClass=person))"
    rendered = render(template, {"input": "*)(|(objectClass=*"})
    assert rendered == "(&(uid=\\2a\\29\\28|\\28objectClass=\\2a)(objectClass=person))"
    assert filter_problem(rendered) is None


def test_render_escapes_a_dn_for_a_member_filter() -> None:
    dn = "uid=o'brien*(x)\\5Cy,ou=people,dc=example,dc=com"
    assert render("(member={dn})", {"dn": dn}) == (
        "(member=uid=o'brien\\2a\\28x\\29\\5c5Cy,ou=people,dc=example,dc=com)"
    )


@pytest.mark.parametrize(
    ("dn", "rdn"),
    [
        ("cn=admins,ou=groups,dc=example,dc=com", ("cn", "admins")),
        ("cn=r&d (team)*,ou=groups,dc=example,dc=com", ("cn", "r&d (team)*")),
        ("CN=Smith\\, John,OU=Groups,DC=corp", ("CN", "Smith, John")),
        ("cn=a\\2Cb\\5Cc,ou=g", ("cn", "a,b\\c")),
        ("cn=Z\\C3\\AB,ou=g", ("cn", "Zë")),
        ("cn=a+sn=b,ou=g", ("cn", "a")),
        ("no-equals-sign", None),
        ("cn=\\FF,ou=g", None),
    ],
)
def test_first_rdn(dn: str, rdn: tuple[str, str] | None) -> None:
    assert first_rdn(dn) == rdn
