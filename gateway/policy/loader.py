"""Reading policy files into a :class:`~gateway.policy.engine.PolicyEngine`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway.config.yaml import (
    ConfigError,
    Document,
    Issue,
    default_environ,
    in_file_order,
    load_file,
)
from gateway.policy.compile import PolicyCompiler
from gateway.policy.engine import PolicyEngine
from gateway.policy.lint import lint_rules

__all__ = ["compile_documents", "load_policy"]


def load_policy(
    paths: Sequence[str | Path], *, environ: Mapping[str, str] | None = None
) -> PolicyEngine:
    """Load, validate and compile policy files (rules are concatenated in file order).

    ``${VAR}`` references and ``networks_env`` of API hosts are filled from ``environ``
    (default: the process environment). Raises :class:`ConfigError` listing every problem
    with ``file:line:column``; warnings (ignored keys, rules that can never match, ...) are
    in the engine's ``warnings``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise ConfigError([Issue(None, "no policy files given")])
    env = environ if environ is not None else default_environ()
    documents: list[Document] = []
    issues: list[Issue] = []
    for path in paths:
        try:
            documents.append(load_file(path, environ=env))
        except ConfigError as error:
            issues.extend(error.issues)
    if issues:
        raise ConfigError(issues)
    return compile_documents(documents, environ=env)


def compile_documents(
    documents: Sequence[Document], *, environ: Mapping[str, str] | None = None
) -> PolicyEngine:
    """Compile already parsed policy documents (see :func:`gateway.config.yaml.load_text`)."""
    compiler = PolicyCompiler(environ=environ)
    for document in documents:
        compiler.add(document)
    rules = compiler.compile()
    if compiler.issues:
        raise ConfigError(compiler.issues)
    sources = [document.file for document in documents]
    warnings = in_file_order([*compiler.warnings, *lint_rules(rules)], sources)
    return PolicyEngine(
        rules,
        compiler.default_level,
        warnings=warnings,
        sources=sources,
        api_hosts=compiler.api_hosts,
        static_api_keys=compiler.static_api_keys,
    )
