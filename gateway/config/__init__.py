"""Configuration: the schema of ``gateway.yml``, how it is read, and how it is checked.

* :mod:`gateway.config.yaml` — YAML with a position for every value; :class:`Issue`,
  :class:`Position` and :class:`ConfigError`, the one way every file reports problems.
* :mod:`gateway.config.values` — value types with no dependencies (durations, rates,
  networks, URLs, paths) and the :class:`Section` base model.
* :mod:`gateway.config.keys` — the JWT algorithms and PEM public keys.
* :mod:`gateway.config.schema` — pydantic errors as positioned issues.
* :mod:`gateway.config.suggest` — "did you mean".
* :mod:`gateway.config.settings` — the root :class:`Settings` and :func:`load_settings`.

Each feature package owns its section (``gateway/credentials/settings.py``,
``gateway/identity/ldap/settings.py``, ...); those modules import only from here, never the
feature's runtime code. Checks that need that code run in :func:`gateway.validation.validate`.
Nothing is imported here, so that importing a submodule stays cheap.
"""
