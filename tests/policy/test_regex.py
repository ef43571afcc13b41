"""Policy regexes are RE2: Go (Authelia) syntax, refusals at load, linear time, UTF-8 texts."""

from __future__ import annotations

import pytest

from gateway.memo import ENTRY_OVERHEAD, BoundedMemo
from gateway.policy import regex
from gateway.policy.regex import compile_pattern

from .helpers import decide, issues_of, policy_from_text


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        # Go syntax Python's re refused or read differently.
        (r"^/\pL+$", "/héllo", True),
        (r"^/\pL+$", "/h3llo", False),
        (r"^/\p{Greek}+$", "/αβγ", True),
        (r"^/\PL$", "/1", True),
        ("^[[:alpha:]]+[[:digit:]]$", "ab1", True),
        ("^[[:alpha:]]+[[:digit:]]$", "ab", False),
        ("^[^[:space:]]+$", "a b", False),
        (r"^a\z", "a", True),
        (r"^a\z", "a\n", False),
        ("^/admin$", "/admin", True),
        ("^/admin$", "/admin\n", False),  # Python's '$' matches before a final newline
        ("(?m)^a$", "b\na\nc", True),
        ("(?s)^a.b$", "a\nb", True),
        ("^a.b$", "a\nb", False),
        (r"\Qa.b\E", "xa.by", True),
        (r"\Qa.b\E", "axb", False),
        (r"\Q\C\E", "\\C", True),  # inside \Q...\E, \C is two literal characters
        # Kept from the former Go-to-Python rewrite table.
        (r"^/price\$", "/price$", True),
        ("^/a[$]", "/a$", True),
        ("[]$]x", "]x", True),
        ("[^]$]x", "ax", True),
        ("[^]$]x", "$x", False),
        # ASCII classes, as in Go: Python's \d and \w also matched other scripts.
        (r"^\d$", "٣", False),
        (r"^\w+$", "é", False),
        (r"^\w+$", "_a1", True),
        # Searched, not anchored, like Go's MatchString.
        ("admin", "/x/admin/y", True),
        ("(?i)ADMIN", "/admin", True),
        ("ADMIN", "/admin", False),
    ],
)
def test_go_syntax_and_meaning(pattern: str, text: str, found: bool) -> None:
    assert compile_pattern(pattern).search(text) is found


@pytest.mark.parametrize(
    ("pattern", "text", "groups"),
    [
        (r"^/(?<User>\w+)/", "/alice/x", ("/alice/", "alice")),
        (r"^/(?P<User>\w+)/", "/alice/x", ("/alice/", "alice")),
        (r"(\pL)(\d)", "/é1", ("é1", "é", "1")),  # positions are characters, not bytes
        (r"^/ü/(\pL+)/(x)?", "/ü/jöhn/", ("/ü/jöhn/", "jöhn", None)),
        ("(?U)a+", "aaa", ("a",)),  # Go's ungreedy flag
        ("a+", "aaa", ("aaa",)),
        ("x", "abc", None),
    ],
)
def test_find_returns_the_groups_of_the_leftmost_match(
    pattern: str, text: str, groups: tuple[str | None, ...] | None
) -> None:
    assert compile_pattern(pattern).find(text) == groups


def test_named_groups_both_spellings() -> None:
    assert dict(compile_pattern(r"^(?<User>\w+)-(?P<Group>\w+)$").groupindex) == {
        "User": 1,
        "Group": 2,
    }


LINEAR = "are left out of RE2 to keep matching linear; Go refuses them too"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("^/(?=admin)", f"invalid perl operator: `(?=` (look-ahead assertions {LINEAR})"),
        ("^/(?!public)", f"invalid perl operator: `(?!` (look-ahead assertions {LINEAR})"),
        ("(?<=/)admin", f"invalid perl operator: `(?<=` (look-behind assertions {LINEAR})"),
        ("(?<!/)admin", f"invalid perl operator: `(?<!` (look-behind assertions {LINEAR})"),
        (r"^/(\w+)/\1$", f"invalid escape sequence: `\\1` (back-references {LINEAR})"),
        ("(?P<n>a)(?P=n)", f"invalid perl operator: `(?P` (back-references {LINEAR})"),
        (r"(?P<n>a)\k<n>", f"invalid escape sequence: `\\k` (back-references {LINEAR})"),
        ("(?>a+)b", f"invalid perl operator: `(?>` (atomic groups {LINEAR})"),
        ("a++", f"bad repetition operator: `++` (possessive quantifiers {LINEAR})"),
        ("a{2}+", f"bad repetition operator: `{{2}}+` (possessive quantifiers {LINEAR})"),
        (r"^/admin\Z", "invalid escape sequence: `\\Z` (use \\z or $ for the end of the text)"),
        (r"^/\C", "invalid escape sequence: `\\C` (it matches one byte, not a character)"),
        (r"(?P<User>a)|(?<User>b)", "the named group 'User' may appear only once"),
        (r"(?P<Group>a)(?P<Group>b)", "the named group 'Group' may appear only once"),
        ("(x", "missing ): `(x`"),
        ("a{1001}", "invalid repetition size: `{1001}`"),
        (r"\p{Klingon}", "invalid character class range: `\\p{Klingon}`"),
    ],
)
def test_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        compile_pattern(pattern)
    assert str(refused.value) == f"invalid regular expression '{pattern}': {reason}"


@pytest.mark.parametrize(
    "pattern",
    [
        r"[(?P<User>](?P<User>a)",  # the first is a character class, not a group
        r"\(?P<User>(?P<User>a)",  # so is an escaped parenthesis
        r"(?P<Users>a)(?P<User>b)",  # only the exact names count
        r"(?P<x>a)(?P<x>b)",  # other names may repeat, as in Go
    ],
)
def test_identity_group_names_are_counted_only_where_they_are_groups(pattern: str) -> None:
    compile_pattern(pattern)


def test_refused_constructs_are_load_errors_with_their_position() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              resources: ['^/(?=admin)']
              policy: one_factor
            - domain_regex: '(?<!www\\.)example\\.com$'
              policy: one_factor
            - domain: app.example.com
              query: [[{key: page, operator: pattern, value: '^(\\d)\\1$'}]]
              policy: one_factor
        """
    ) == [
        f"policy.yml:5:19: invalid regular expression '^/(?=admin)': invalid perl operator: "
        f"`(?=` (look-ahead assertions {LINEAR})",
        f"policy.yml:7:21: invalid regular expression '(?<!www\\.)example\\.com$': invalid perl "
        f"operator: `(?<!` (look-behind assertions {LINEAR})",
        f"policy.yml:10:54: invalid regular expression '^(\\d)\\1$': invalid escape sequence: "
        f"`\\1` (back-references {LINEAR})",
    ]


@pytest.mark.timeout(10)
def test_nested_quantifiers_do_not_backtrack() -> None:
    # Python's re needed 0.6 s for 24 characters here, doubling with each one more; RE2 is
    # linear. No timing is asserted (the timeout only stops a regression from hanging).
    pattern = compile_pattern("^/(a+)+$")
    assert not pattern.search("/" + "a" * 30 + "!")
    assert pattern.search("/" + "a" * 30)
    assert pattern.find("/" + "a" * 100_000 + "!") is None
    engine = policy_from_text(
        """
        access_control:
          default_policy: deny
          rules:
            - domain: app.example.com
              resources: ['^/(a+)+$']
              policy: bypass
        """
    )
    assert decide(engine, "https://app.example.com/" + "a" * 40).level.policy == "bypass"
    assert decide(engine, "https://app.example.com/" + "a" * 40 + "!").level.policy == "deny"


def test_domain_regex_ignores_case() -> None:
    pattern = compile_pattern(r"^App\.Example\.com$", ignore_case=True)
    assert pattern.search("app.example.com")
    assert pattern.search("APP.EXAMPLE.COM")
    assert not compile_pattern(r"^App\.Example\.com$").search("app.example.com")
    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain_regex: '^(?P<User>\\w+)\\.Home\\.example\\.com$'
              policy: one_factor
        """
    )
    assert decide(engine, "https://alice.home.example.com/", "alice").level.policy == "one_factor"
    assert decide(engine, "https://alice.home.example.com/", "bob").level.policy == "deny"


def test_identity_groups_in_non_ascii_paths() -> None:
    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: files.example.com
              resources: ['^/home/(?P<User>\\pL+)/']
              policy: one_factor
        """
    )
    url = "https://files.example.com/home/j%C3%B6hn/notes"
    assert decide(engine, url, "jöhn").level.policy == "one_factor"
    assert decide(engine, url, "JÖHN").level.policy == "one_factor"
    assert decide(engine, url, "john").level.policy == "deny"
    anonymous = decide(engine, url)
    assert (anonymous.level.policy, anonymous.potential) == ("one_factor", True)


def test_a_lone_surrogate_reads_as_a_replacement_character() -> None:
    # Never in a request (paths are decoded with errors="replace"), but a str built in code
    # must not raise from the hot path.
    assert compile_pattern("^/a\ufffdb$").search("/a\ud800b")
    assert compile_pattern("^/a(.)b$").find("/a\udfffb") == ("/a\ufffdb", "\ufffd")


def test_compiled_patterns_are_shared_and_compare_by_text_and_case() -> None:
    assert compile_pattern("^/x") is compile_pattern("^/x")
    assert compile_pattern("^/x") == regex.Pattern("^/x", ignore_case=False)
    assert compile_pattern("^/x") != compile_pattern("^/x", ignore_case=True)
    assert len({compile_pattern("^/x"), regex.Pattern("^/x", ignore_case=False)}) == 1


def test_remembered_answers_stay_per_pattern_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regex, "_memo", BoundedMemo(8, 8 * (regex._MEMO_TEXT + ENTRY_OVERHEAD)))
    admin, public = compile_pattern("^/admin"), compile_pattern("^/public")
    for _ in range(2):  # the second round answers from the memo
        assert admin.search("/admin/x") and not public.search("/admin/x")
        assert public.search("/public") and not admin.search("/public")
    for index in range(20):
        assert admin.search(f"/admin/{index}")
        assert len(regex._memo) <= 8
    long_path = "/admin/" + "x" * regex._MEMO_TEXT
    assert admin.search(long_path)
    assert (admin._slot, long_path) not in regex._memo
