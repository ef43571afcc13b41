"""Pydantic models read from YAML: their errors as positioned issues, their option types.

A section model validates plain data; this turns what pydantic reports into the
``file:line:column`` issues every loader reports (:class:`~gateway.config.yaml.Issue`):
an unknown option at its key with a suggestion, a missing one, a value that is not allowed.
``gateway.yml`` and the ``api_hosts:`` of policy files go through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import Document, Issue, YamlPath

__all__ = ["is_list_option", "validation_issues"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model an option's annotation holds (``X``, ``X | None``, ``tuple[X, ...]``)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk(root: type[BaseModel], location: YamlPath) -> tuple[type[BaseModel] | None, Any]:
    """The model the option at ``location`` holds (None if it holds none) and the option's
    annotation, list indexes skipped; (None, None) when there is no such option."""
    model: type[BaseModel] | None = root
    annotation: Any = None
    for part in location:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None, None
        annotation = info.annotation
        model = _model_of(annotation)
    return model, annotation


def is_list_option(root: type[BaseModel], location: YamlPath) -> bool:
    """Whether the option at ``location`` holds a list (a ``NAME_file`` then gives one entry
    per line) rather than one value."""
    _, annotation = _walk(root, location)
    origins = {getattr(annotation, "__origin__", None)}
    origins.update(getattr(arg, "__origin__", None) for arg in getattr(annotation, "__args__", ()))
    return bool(origins & {tuple, list})


def _known_options(root: type[BaseModel], location: YamlPath) -> list[str]:
    """The options of the mapping that holds ``location`` (for "did you mean")."""
    model, _ = _walk(root, location[:-1])
    return list(model.model_fields) if model is not None else []


def _issue_from_error(
    document: Document, error: Mapping[str, Any], model: type[BaseModel], prefix: YamlPath
) -> Issue:
    relative: YamlPath = tuple(part for part in error["loc"] if isinstance(part, str | int))
    location: YamlPath = (*prefix, *relative)
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    field = ".".join(str(part) for part in location) or "configuration"
    if kind == "extra_forbidden":
        name = str(location[-1])
        hint = did_you_mean(name, _known_options(model, relative))
        return document.issue(location, f"unknown option '{name}'{hint}", at_key=True)
    elif kind == "missing":
        message = f"missing required option '{field}'"
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f"'{error.get('input')}' is not allowed for {field} (expected {expected})"
    else:
        message = f"{field}: {message}"
    return document.issue(location, message)


def validation_issues(
    document: Document,
    error: ValidationError,
    *,
    model: type[BaseModel],
    prefix: YamlPath = (),
) -> list[Issue]:
    """Every problem of a failed ``model.model_validate`` as ``file:line:column`` issues.

    ``prefix`` is where in ``document`` the validated data sits (``("api_hosts", 0)``), so
    that a policy file can validate one entry with a settings model and still point at it.
    """
    details = error.errors()
    # A list whose items failed also reports "too short"; the item errors say more.
    failed_items = {
        tuple(detail["loc"][:index])
        for detail in details
        for index, part in enumerate(detail["loc"])
        if isinstance(part, int)
    }
    return [
        _issue_from_error(document, detail, model, prefix)
        for detail in details
        if not (detail["type"] == "too_short" and tuple(detail["loc"]) in failed_items)
    ]
