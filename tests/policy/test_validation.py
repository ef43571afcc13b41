"""A policy that cannot be used is refused with every problem, each as file:line:col: message."""

from __future__ import annotations

import pytest

from gateway.config.yaml import ConfigError, load_text
from gateway.policy import compile_documents, load_policy

from .helpers import issues_of

POLICIES = ", ".join(["bypass", "one_factor", "two_factor", "deny"])


def test_unknown_policy_names_the_value() -> None:
    assert issues_of(
        """
        access_control:
          default_policy: deny
          rules:
            - domain: app.example.com
              policy: two-factor
        """
    ) == [f"policy.yml:6:15: unknown policy 'two-factor' (expected {POLICIES})"]


def test_unknown_default_policy() -> None:
    assert issues_of(
        """
        access_control:
          default_policy: allow
          rules:
            - domain: app.example.com
              policy: deny
        """
    ) == [f"policy.yml:3:19: unknown policy 'allow' (expected {POLICIES})"]


def test_policy_must_be_text() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: [one_factor]
        """
    ) == [f"policy.yml:5:15: the policy must be one of {POLICIES}"]


def test_rule_without_domain_or_policy() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - policy: one_factor
              resources: ['^/x']
            - domain: app.example.com
        """
    ) == [
        "policy.yml:4:7: a rule needs 'domain' or 'domain_regex'",
        f"policy.yml:6:7: a rule needs a 'policy' (expected {POLICIES})",
    ]


def test_bypass_cannot_depend_on_the_user() -> None:
    assert issues_of(
        r"""
        access_control:
          rules:
            - domain: app.example.com
              policy: bypass
              subject: user:john
            - domain_regex: '^(?P<User>\w+)\.example\.com$'
              policy: bypass
        """
    ) == [
        "policy.yml:6:16: policy 'bypass' cannot have a 'subject': the user is unknown until "
        "they log in (use one_factor)",
        "policy.yml:7:21: policy 'bypass' cannot use a domain_regex with User or Group named "
        "groups: the user is unknown until they log in",
    ]


def test_bad_regular_expressions() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
              resources: ['^/(admin']
            - domain_regex: '[a-'
              policy: one_factor
        """
    ) == [
        "policy.yml:6:19: invalid regular expression '^/(admin': missing ): `^/(admin`",
        "policy.yml:7:21: invalid regular expression '[a-': missing ]: `[a-`",
    ]


def test_bad_networks_and_unknown_network_names() -> None:
    assert issues_of(
        """
        definitions:
          network:
            office: [10.0.0.0/8, 10.0.0.300/32]
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
              networks: [10.0.0.0/33, ofice, internal]
        """
    ) == [
        "policy.yml:4:26: invalid network in 'office': '10.0.0.300/32' is not an IP address or "
        "CIDR",
        "policy.yml:9:18: unknown network '10.0.0.0/33': not an IP address, a CIDR or a defined "
        "network name (defined: office)",
        "policy.yml:9:31: unknown network 'ofice': not an IP address, a CIDR or a defined "
        "network name (did you mean 'office'?)",
        "policy.yml:9:38: unknown network 'internal': not an IP address, a CIDR or a defined "
        "network name (defined: office)",
    ]


def test_network_defined_twice() -> None:
    assert issues_of(
        """
        definitions:
          network:
            lan: 10.0.0.0/8
        access_control:
          networks:
            - name: lan
              networks: [192.168.0.0/16]
          rules:
            - domain: app.example.com
              policy: one_factor
        """
    ) == ["policy.yml:7:13: network 'lan' is already defined at policy.yml:4:5"]


def test_bad_and_duplicate_methods() -> None:
    issues = issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
              methods: [GET, fetch, get]
        """
    )
    assert issues[0].startswith(
        "policy.yml:6:22: unknown method 'fetch' (expected one of GET, HEAD, "
    )
    assert issues[1:] == ["policy.yml:6:29: duplicate method 'get'"]


def test_bad_subjects_with_hints() -> None:
    prefixes = "user:, group:, oauth2:client:, key:, cert: or client:"
    assert issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
              subject: ['users:john', ['group:admins', 'grp:x'], 'user:', 'team:x', []]
        """
    ) == [
        f"policy.yml:6:17: invalid subject 'users:john': must start with {prefixes} "
        "(did you mean 'user:john'?)",
        f"policy.yml:6:48: invalid subject 'grp:x': must start with {prefixes} "
        "(did you mean 'group:x'?)",
        "policy.yml:6:58: subject 'user:' names no user",
        f"policy.yml:6:67: invalid subject 'team:x': must start with {prefixes}",
        "policy.yml:6:77: an empty subject list would match everyone; remove it or name a subject",
    ]


def test_unknown_keys_point_at_the_key_with_a_hint() -> None:
    assert issues_of(
        """
        access_control:
          default_polcy: deny
          rules:
            - domains: app.example.com
              policy: one_factor
              resource:
                - '^/x'
              foo: 1
        """
    ) == [
        "policy.yml:3:3: unknown key 'default_polcy' in access_control "
        "(did you mean 'default_policy'?)",
        "policy.yml:5:7: unknown key 'domains' in rule (did you mean 'domain'?)",
        "policy.yml:7:7: unknown key 'resource' in rule (did you mean 'resources'?)",
        "policy.yml:9:7: unknown key 'foo' in rule",
        "policy.yml:5:7: a rule needs 'domain' or 'domain_regex'",
    ]


def test_query_conditions_are_validated_like_authelia() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
              query:
                - - {key: a, operator: equals, value: x}
                  - {key: b, operator: present, value: y}
                  - {key: c, operator: equal}
                  - {operator: absent}
                  - {key: d, operator: pattern, value: '(x'}
                  - {key: e, value: 5}
                  - {key: f, vale: x}
        """
    ) == [
        "policy.yml:7:32: unknown query operator 'equals' (expected equal, not equal, present, "
        "absent, pattern, not pattern)",
        "policy.yml:8:48: the query 'value' must not be set when the operator is 'present'",
        "policy.yml:9:13: the query 'value' is required when the operator is 'equal'",
        "policy.yml:10:13: a query condition needs a 'key' (text)",
        "policy.yml:11:48: invalid regular expression '(x': missing ): `(x`",
        "policy.yml:12:29: the query 'value' must be a string (quote it)",
        "policy.yml:13:22: unknown key 'vale' in query condition (did you mean 'value'?)",
    ]


def test_query_operators_accept_any_case() -> None:
    from .helpers import decide, policy_from_text

    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: two_factor
              query: [{key: mode, operator: Not Equal, value: read}]
            - domain: app.example.com
              policy: one_factor
        """
    )
    assert decide(engine, "https://app.example.com/?mode=edit").level.policy == "two_factor"
    assert decide(engine, "https://app.example.com/?mode=read").level.policy == "one_factor"


def test_wrong_types_and_urls_as_domains() -> None:
    assert issues_of(
        """
        access_control:
          rules:
            - domain: [app.example.com, 5]
              policy: one_factor
            - domain: https://app.example.com/
              policy: one_factor
            - "just a string"
        """
    ) == [
        "policy.yml:4:33: 'domain' entries must be strings (quote them)",
        "policy.yml:6:15: invalid domain 'https://app.example.com/': write the host name only, "
        "without scheme, port or path",
        "policy.yml:8:7: a rule must be a mapping with 'domain' (or 'domain_regex') and 'policy'",
    ]


def test_no_rules_needs_a_login_default_like_authelia() -> None:
    assert issues_of(
        """
        access_control:
          default_policy: deny
        """
    ) == [
        "policy.yml:3:19: no rules are defined, so default_policy must be one_factor or "
        "two_factor (it is deny)"
    ]
    # With a login default and no rules the policy is valid (every host needs one factor).
    from .helpers import policy_from_text

    assert policy_from_text("access_control: {default_policy: one_factor}").rules == ()


def test_misspelt_top_level_key_is_an_error_other_keys_are_ignored() -> None:
    assert issues_of(
        """
        acess_control:
          rules: []
        """
    ) == [
        "policy.yml:2:1: unknown top-level key 'acess_control' (did you mean 'access_control'?)",
        "policy.yml:2:1: no rules are defined, so default_policy must be one_factor or "
        "two_factor (it is deny, the default when it is not set)",
    ]


def test_no_rules_and_no_default_policy_names_the_file_and_line() -> None:
    assert issues_of("definitions: {}\naccess_control: {rules: []}\n") == [
        "policy.yml:2:1: no rules are defined, so default_policy must be one_factor or "
        "two_factor (it is deny, the default when it is not set)"
    ]
    assert issues_of("# nothing here\n") == [
        "policy.yml:1:1: no rules are defined, so default_policy must be one_factor or "
        "two_factor (it is deny, the default when it is not set)"
    ]


def test_default_policy_may_be_set_once_across_files() -> None:
    first = load_text("access_control:\n  default_policy: deny\n", "a.yml")
    second = load_text(
        "access_control:\n  default_policy: bypass\n  rules:\n"
        "    - domain: x.example.com\n      policy: deny\n",
        "b.yml",
    )
    with pytest.raises(ConfigError) as refused:
        compile_documents([first, second])
    assert [str(issue) for issue in refused.value.issues] == [
        "b.yml:2:19: default_policy is already set at a.yml:2:19"
    ]


def test_all_problems_of_all_files_are_reported_together(tmp_path) -> None:
    good = tmp_path / "good.yml"
    bad = tmp_path / "bad.yml"
    good.write_text("access_control:\n  rules:\n    - domain: a.example.com\n      policy: nope\n")
    bad.write_text("access_control:\n  rules:\n    - domain: b.example.com\n      policy: [\n")
    missing = tmp_path / "missing.yml"
    with pytest.raises(ConfigError) as refused:
        load_policy([good, bad, missing])
    messages = [str(issue) for issue in refused.value.issues]
    assert len(messages) == 2
    assert messages[0].startswith(f"{bad}:5:1: invalid YAML")
    assert messages[1] == f"{missing}: file not found"
    # Once the files parse, the rule problem is reported with its position.
    bad.write_text("access_control:\n  rules: []\n")
    with pytest.raises(ConfigError) as refused:
        load_policy([good, bad])
    assert [str(issue) for issue in refused.value.issues] == [
        f"{good}:4:15: unknown policy 'nope' (expected {POLICIES})"
    ]


def test_environment_variables_are_interpolated(tmp_path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "access_control:\n  rules:\n    - domain: ${APP_HOST}\n      policy: one_factor\n"
    )
    engine = load_policy([policy], environ={"APP_HOST": "app.example.com"})
    assert engine.rules[0].domains[0].name == "app.example.com"
    with pytest.raises(ConfigError) as refused:
        load_policy([policy], environ={})
    assert "environment variable APP_HOST is not set" in str(refused.value)
