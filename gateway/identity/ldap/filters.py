"""LDAP search filters (RFC 4515) and DN values (RFC 4514): templates, escaping, presets.

Every value that comes from a person or from the directory is escaped before it goes into a
filter, so ``*``, ``(``, ``)``, ``\\`` and NUL in a username match those characters literally
and can never widen a search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

__all__ = [
    "PRESETS",
    "Preset",
    "escape_filter_value",
    "filter_problem",
    "first_rdn",
    "render",
]

# Active Directory: "account disabled" is bit 2 of userAccountControl (LDAP_MATCHING_RULE_BIT_AND).
AD_ACCOUNT_ENABLED = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"


@dataclass(frozen=True, slots=True)
class Preset:
    """Defaults an ``implementation`` brings for options the configuration leaves unset."""

    users_filter: str
    groups_filter: str
    group_search_mode: str
    username: str
    display_name: str
    mail: str
    group_name: str
    member_of: str


PRESETS: dict[str, Preset] = {
    "custom": Preset(
        users_filter="(&({username_attribute}={input})(objectClass=person))",
        groups_filter="(&(member={dn})(objectClass=groupOfNames))",
        group_search_mode="filter",
        username="uid",
        display_name="displayName",
        mail="mail",
        group_name="cn",
        member_of="memberOf",
    ),
    "openldap": Preset(
        users_filter="(&({username_attribute}={input})(objectClass=person))",
        groups_filter=(
            "(&(|(member={dn})(uniqueMember={dn}))"
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)))"
        ),
        group_search_mode="filter",
        username="uid",
        display_name="displayName",
        mail="mail",
        group_name="cn",
        member_of="memberOf",
    ),
    "activedirectory": Preset(
        users_filter=(
            "(&(|({username_attribute}={input})(userPrincipalName={input}))"
            f"(objectClass=person){AD_ACCOUNT_ENABLED})"
        ),
        # security (268435456) and distribution (536870912) groups, direct membership
        groups_filter="(&(member={dn})(|(sAMAccountType=268435456)(sAMAccountType=536870912)))",
        group_search_mode="filter",
        username="sAMAccountName",
        display_name="displayName",
        mail="mail",
        group_name="cn",
        member_of="memberOf",
    ),
}

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def escape_filter_value(value: str) -> str:
    """``value`` as an RFC 4515 assertion value: ``*``, ``(``, ``)``, ``\\`` and NUL escaped."""
    escaped: str = escape_filter_chars(value)
    return escaped


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders of a filter template with escaped values.

    ``values`` are raw; each is escaped here. Unknown placeholders raise ``KeyError``.
    """

    def replace(match: re.Match[str]) -> str:
        return escape_filter_value(values[match.group(1)])

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def filter_problem(text: str) -> str | None:
    """Why ``text`` is not a valid LDAP filter, or None."""
    try:
        parse_filter(
            text, None, auto_escape=True, auto_encode=True, validator=None, check_names=False
        )
    except LDAPException as error:
        return str(error) or "invalid filter"
    return None


def first_rdn(dn: str) -> tuple[str, str] | None:
    """The attribute type and unescaped value of a DN's first RDN (RFC 4514).

    ``cn=Smith\\, John,ou=groups`` gives ``("cn", "Smith, John")``; for a multi-valued RDN
    (``cn=a+sn=b``) only the first value counts. None if the DN is malformed.
    """
    equals = dn.find("=")
    if equals <= 0:
        return None
    attribute = dn[:equals].strip()
    value = bytearray()
    index = equals + 1
    while index < len(dn):
        char = dn[index]
        if char == "\\":
            pair = dn[index + 1 : index + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                value.append(int(pair, 16))
                index += 3
                continue
            if index + 1 >= len(dn):
                return None
            value.extend(dn[index + 1].encode())
            index += 2
            continue
        if char in ",+":
            break
        value.extend(char.encode())
        index += 1
    try:
        return attribute, value.decode("utf-8")
    except UnicodeDecodeError:
        return None
