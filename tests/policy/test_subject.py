"""One way to build a Subject from an identity."""

from __future__ import annotations

from gateway.policy import ANONYMOUS, Subject


def test_of_takes_any_iterables_and_freezes_them() -> None:
    subject = Subject.of("john", ["dev", "admins", "dev"], ("key:ci",))
    assert subject == Subject("john", frozenset({"dev", "admins"}), frozenset({"key:ci"}))


def test_a_machine_subject_has_no_username() -> None:
    subject = Subject.of(None, ("deploy",), frozenset({"key:ci"}))
    assert subject.username is None and not subject.is_anonymous


def test_nothing_is_anonymous() -> None:
    assert Subject.of(None) == ANONYMOUS
    assert Subject.of(None).is_anonymous
