"""The files under deploy/ and caddy/ do what their comments promise.

Static checks an operator relies on: every manifest parses; the configurations shipped for
Compose, Kubernetes and systemd pass `gateway check --strict` with the secret files they
reference laid out as the container or unit would see them; probes and ExecStartPre point
where they should; and every Caddyfile adapts with a real Caddy (Debian's and PyPI's) into
JSON that strips client-sent Remote-* headers before forward_auth and copies the gateway's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.identity.passwords import hash_password
from gateway.security.crypto import generate_key
from tests.services import CADDY_BINARIES, CaddyBinary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"

REMOTE_HEADERS = ("Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name")
UNDERSCORE_HEADERS = tuple(name.replace("-", "_") for name in REMOTE_HEADERS)
FORWARD_AUTH_URI = "/api/authz/forward-auth"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


# --------------------------------------------------------------------------------------------
# helpers


def _secret_value(name: str) -> str:
    if name == "encryption_keys":
        return generate_key() + "\n"
    if name == "hash_key":
        return secrets.token_urlsafe(48) + "\n"
    return secrets.token_hex(16) + "\n"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def _users_file(path: Path) -> None:
    _write_secret(
        path,
        "users:\n  alice:\n    displayname: Alice\n    email: alice@example.com\n"
        f'    groups: [admins]\n    password: "{hash_password("correct horse")}"\n',
    )


def _gateway_check(config: Path, env: Mapping[str, str]) -> None:
    """Run the real `gateway check --strict`: any error or warning fails the test."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--strict", "--config", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"gateway check failed for {config}:\n{result.stdout}{result.stderr}"
    )
    assert ": OK (" in result.stdout


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every object in deploy/kubernetes by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in _load_all(path):
            if "kind" in document and document["kind"] != "Kustomization":
                objects[document["kind"]] = document
    return objects


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _unit_settings(path: Path) -> dict[str, list[str]]:
    """A systemd unit as key -> values (keys may repeat, like LoadCredential=)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# --------------------------------------------------------------------------------------------
# every manifest parses


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert _load_all(path), f"{path} holds no YAML document"


def test_the_expected_manifests_exist() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    for expected in (
        "systemd/gateway.service",
        "compose/compose.yaml",
        "compose/Dockerfile",
        "compose/gateway.yml",
        "compose/Caddyfile",
        "kubernetes/deployment.yaml",
        "kubernetes/configmap.yaml",
        "kubernetes/README.md",
        "nginx/gateway.conf",
    ):
        assert expected in names


# --------------------------------------------------------------------------------------------
# Docker Compose


def _compose() -> dict[str, Any]:
    [compose] = _load_all(COMPOSE / "compose.yaml")
    return dict(compose)


def test_compose_gateway_configuration_passes_gateway_check(tmp_path: Path) -> None:
    """Lay out /etc/gateway and /run/secrets as the gateway container sees them."""
    compose = _compose()
    service = compose["services"]["gateway"]
    etc = tmp_path / "etc" / "gateway"
    run_secrets = tmp_path / "run" / "secrets"
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        assert target.startswith("/etc/gateway/"), volume
        local = etc / target.removeprefix("/etc/gateway/")
        host = COMPOSE / source
        if host.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            text = host.read_text()
            if host.name == "gateway.yml":
                text = text.replace("/run/secrets/", f"{run_secrets}/")
            local.write_text(text)
        else:
            # The users directory: created by the operator with `gateway users add`.
            _users_file(local / "users.yml")
    for name in service["secrets"]:
        assert compose["secrets"][name]["file"].startswith("./secrets/"), name
        _write_secret(run_secrets / name, _secret_value(name))
    assert service["environment"]["DOMAIN"].startswith("${DOMAIN")
    _gateway_check(etc / "gateway.yml", {"DOMAIN": "example.com"})


def test_compose_trusts_exactly_caddy_and_caddy_finds_the_gateway() -> None:
    compose = _compose()
    text = (COMPOSE / "gateway.yml").read_text()
    config = yaml.safe_load(text)
    caddy = compose["services"]["caddy"]
    caddy_ip = caddy["networks"]["front"]["ipv4_address"]
    assert config["server"]["trusted_proxies"] == [f"{caddy_ip}/32"]
    assert config["server"]["address"] == "0.0.0.0"
    assert caddy["environment"]["GATEWAY"] == f"gateway:{config['server']['port']}"
    subnet = compose["networks"]["front"]["ipam"]["config"][0]["subnet"]
    assert caddy_ip.rsplit(".", 1)[0] == subnet.split("/")[0].rsplit(".", 1)[0]
    # Several replicas' worth of state lives outside the container.
    assert config["session"]["store"] == "redis"
    assert config["storage"]["type"] == "postgres"
    # The snippets Caddy imports are the repository's own.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in caddy["volumes"]}
    assert (COMPOSE / mounts["/etc/caddy/snippets.caddy"]).resolve() == (
        ROOT / "caddy" / "snippets.caddy"
    )
    assert compose["networks"]["back"]["internal"] is True
    assert "back" not in caddy["networks"]


def test_compose_gateway_runs_unprivileged() -> None:
    service = _compose()["services"]["gateway"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["ulimits"]["nofile"]["soft"] >= 4096
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "uv sync --frozen" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0")), users
    assert "/api/health" in dockerfile  # HEALTHCHECK
    ignored = (COMPOSE / ".gitignore").read_text().split()
    assert "secrets/" in ignored and ".env" in ignored


# --------------------------------------------------------------------------------------------
# Kubernetes


def test_kubernetes_configmap_configuration_passes_gateway_check(tmp_path: Path) -> None:
    """Lay out the ConfigMap and the Secret where the Deployment mounts them."""
    objects = _kubernetes_objects()
    container = _container(objects)
    volumes = {v["name"]: v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_mount = next(mounts[n] for n, v in volumes.items() if "configMap" in v)
    secret_mount = next(mounts[n] for n, v in volumes.items() if "secret" in v)
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert config_path.startswith(config_mount + "/")

    [kustomization] = _load_all(KUBERNETES / "kustomization.yaml")
    [generator] = [g for g in kustomization["secretGenerator"] if g["name"] == "gateway-secrets"]
    assert any(v.get("secret", {}).get("secretName") == "gateway-secrets" for v in volumes.values())

    config_dir = tmp_path / config_mount.lstrip("/")
    secret_dir = tmp_path / secret_mount.lstrip("/")
    for key, text in objects["ConfigMap"]["data"].items():
        (config_dir / key).parent.mkdir(parents=True, exist_ok=True)
        (config_dir / key).write_text(text.replace(secret_mount + "/", f"{secret_dir}/"))
    for file in generator["files"]:
        name = Path(file).name
        if name.endswith(".yml"):
            _users_file(secret_dir / name)
        else:
            _write_secret(secret_dir / name, _secret_value(name))
    _gateway_check(config_dir / Path(config_path).name, {})


def test_kubernetes_probes_and_security_context() -> None:
    objects = _kubernetes_objects()
    deployment = objects["Deployment"]
    container = _container(objects)
    [port] = container["ports"]
    config = yaml.safe_load(objects["ConfigMap"]["data"]["gateway.yml"])
    assert port["containerPort"] == config["server"]["port"]
    assert config["server"]["address"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    assert deployment["spec"]["replicas"] >= 2
    # Replicas share sessions and records.
    assert config["session"]["store"] == "redis"
    assert config["storage"]["type"] == "postgres"
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "memory" in container["resources"]["limits"]
    # Memory, not the container's (usually huge) open-files limit, bounds the connections:
    # about 20 KiB each must fit in a quarter of the memory limit.
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    assert config["server"]["limit_concurrency"] * 20 * 1024 <= int(limit[:-2]) * 2**20 // 4
    service = objects["Service"]
    assert service["spec"]["ports"][0]["port"] == config["server"]["port"]
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


# --------------------------------------------------------------------------------------------
# systemd


def test_systemd_unit_checks_before_it_serves_and_is_hardened() -> None:
    unit = _unit_settings(SYSTEMD / "gateway.service")
    [pre] = unit["ExecStartPre"]
    [start] = unit["ExecStart"]
    assert re.search(r"/gateway check --config \S+", pre), pre
    assert re.search(r"/gateway serve --config \S+", start), start
    assert pre.split("--config")[1] == start.split("--config")[1]
    assert unit["StateDirectory"] == ["gateway"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User", [""])[0] not in ("", "root")
    # The filter denies setrlimit (@resources), so the unit itself must set the limit the
    # gateway sizes its connection limit from.
    assert any("@resources" in line for line in unit["SystemCallFilter"])
    assert int(unit["LimitNOFILE"][0]) >= 4096


def test_systemd_configuration_passes_gateway_check(tmp_path: Path) -> None:
    """gateway.yml reads exactly the LoadCredential= names from ${CREDENTIALS_DIRECTORY}."""
    unit = _unit_settings(SYSTEMD / "gateway.service")
    credentials = tmp_path / "credentials"
    for entry in unit["LoadCredential"]:
        name = entry.split(":")[0]
        _write_secret(credentials / name, _secret_value(name))
    text = (SYSTEMD / "gateway.yml").read_text()
    referenced = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/(\w+)", text))
    assert referenced == {e.split(":")[0] for e in unit["LoadCredential"]}
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(SYSTEMD / "gateway.yml", etc / "gateway.yml")
    shutil.copy(SYSTEMD / "policy.yml", etc / "policy.yml")
    _users_file(etc / "users.yml")
    state = tmp_path / "state"
    state.mkdir()
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state)}
    _gateway_check(etc / "gateway.yml", env)


def test_annotated_example_in_the_configuration_reference_passes_gateway_check(
    tmp_path: Path,
) -> None:
    """docs/configuration.md promises its complete example passes `gateway check`."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("## A complete, annotated example") :]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    etc = tmp_path / "etc" / "gateway"
    etc.mkdir(parents=True)
    config = example.group(1).replace("/etc/gateway/", f"{etc}/")
    (etc / "gateway.yml").write_text(config)
    for name in re.findall(rf"{re.escape(str(etc))}/credentials/(\w+)", config):
        _write_secret(etc / "credentials" / name, _secret_value(name))
    shutil.copy(ROOT / "policies" / "example.yml", etc / "policy.yml")
    _users_file(etc / "users.yml")
    _gateway_check(etc / "gateway.yml", {})


# --------------------------------------------------------------------------------------------
# Caddyfiles, adapted by a real Caddy


CADDYFILES = {
    "caddy/gateway.Caddyfile": ROOT / "caddy" / "gateway.Caddyfile",
    "caddy/demo.Caddyfile": ROOT / "caddy" / "demo.Caddyfile",
    "deploy/compose/Caddyfile": COMPOSE / "Caddyfile",
}


def _adapt(binary: CaddyBinary, caddyfile: Path, tmp_path: Path) -> dict[str, Any]:
    # Like the Compose container: the Caddyfile with snippets.caddy next to it.
    work = tmp_path / "caddy"
    work.mkdir()
    shutil.copy(caddyfile, work / "Caddyfile")
    shutil.copy(ROOT / "caddy" / "snippets.caddy", work / "snippets.caddy")
    env = {
        **os.environ,
        "DOMAIN": "example.com",
        "GATEWAY": "127.0.0.1:9091",
        "CADDY_DATA": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [str(binary.path), "adapt", "--adapter", "caddyfile", "--config", str(work / "Caddyfile")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"caddy {binary.version} cannot adapt {caddyfile}:\n{result.stderr}"
    )
    return dict(json.loads(result.stdout))


def _flatten(handlers: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Handlers in the order a request meets them, through nested subroutes."""
    for handler in handlers:
        if handler.get("handler") == "subroute":
            for route in handler.get("routes", []):
                yield from _flatten(route.get("handle", []))
        else:
            yield handler


def _routes(node: Any) -> Iterator[dict[str, Any]]:
    """Every route object anywhere in the adapted JSON."""
    if isinstance(node, dict):
        if "handle" in node and isinstance(node["handle"], list):
            yield node
        for value in node.values():
            yield from _routes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _routes(item)


def _is_forward_auth(handler: dict[str, Any]) -> bool:
    return (
        handler.get("handler") == "reverse_proxy"
        and handler.get("rewrite", {}).get("uri") == FORWARD_AUTH_URI
    )


@pytest.mark.parametrize("caddy_name", CADDY_BINARIES)
@pytest.mark.parametrize("caddyfile", list(CADDYFILES), ids=list(CADDYFILES))
def test_caddyfile_strips_client_headers_and_copies_the_gateways(
    caddyfile: str, caddy_name: str, caddy_binaries: dict[str, CaddyBinary], tmp_path: Path
) -> None:
    config = _adapt(caddy_binaries[caddy_name], CADDYFILES[caddyfile], tmp_path)
    servers = config["apps"]["http"]["servers"]
    sites = [route for server in servers.values() for route in server["routes"]]
    protected = 0
    for site in sites:
        hosts = [host for match in site.get("match", []) for host in match.get("host", [])]
        chain = list(_flatten(site["handle"]))
        proxies = [h for h in chain if h.get("handler") == "reverse_proxy"]
        if any(host.startswith("auth.") for host in hosts):
            # The portal: operator endpoints answer 404 before anything reaches the gateway.
            blocked = [
                route
                for route in _routes(site)
                if {"/metrics", "/api/ready"}
                <= {p for m in route.get("match", []) for p in m.get("path", [])}
            ]
            assert blocked, f"{hosts}: /metrics and /api/ready are not blocked"
            assert blocked[0]["handle"][0]["handler"] == "static_response"
            assert int(blocked[0]["handle"][0]["status_code"]) == 404
            continue
        # Every other site proxies somewhere, so it must ask the gateway first.
        assert proxies, f"{hosts}: no reverse_proxy"
        forward = next((i for i, h in enumerate(chain) if _is_forward_auth(h)), None)
        assert forward is not None, f"{hosts}: proxied without forward_auth"
        assert chain.index(proxies[-1]) > forward
        deleted = {
            name
            for handler in chain[:forward]
            if handler.get("handler") == "headers"
            for name in handler.get("request", {}).get("delete", [])
        }
        missing = set(REMOTE_HEADERS + UNDERSCORE_HEADERS) - deleted
        assert not missing, f"{hosts}: not stripped before forward_auth: {sorted(missing)}"
        copied: dict[str, list[str]] = {}
        for response in chain[forward].get("handle_response", []):
            if response.get("match", {}).get("status_code") != [2]:
                continue
            for route in response.get("routes", []):
                for handler in _flatten(route.get("handle", [])):
                    copied.update(handler.get("request", {}).get("set", {}))
        for name in REMOTE_HEADERS:
            assert copied.get(name) == [f"{{http.reverse_proxy.header.{name}}}"], (
                f"{hosts}: {name} is not copied from the gateway's answer"
            )
        protected += 1
    assert protected >= 1
