"""docker-compose.yml and the Dockerfile, checked without a container engine.

The compose file is validated against the Compose Specification's JSON Schema (vendored in
compose_spec/, see its README), after the same `${VAR:-default}` interpolation Compose applies, and
then held to what makes it come up working: pinned images, a healthcheck on every long-running
service, dependencies that wait on conditions, settings that exist, the brokers' logs and the
watchdog's state on named volumes. When `docker compose` is installed, it parses the file too.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from services.core.settings import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
KAFKA_POM = PROJECT_ROOT / "devtools" / "stack" / "kafka" / "pom.xml"

# The conditions that make a service wait for another's state; the bare list form (and
# `service_started`) only waits for a container to exist.
WAITING_CONDITIONS = {"service_healthy", "service_completed_successfully"}
KAFKA_NODES = ["kafka-1", "kafka-2", "kafka-3"]
# What the apache/kafka image's start script (docker/resources/common-scripts/configureDefaults)
# fills in for a single-node sandbox when unset: listeners on localhost, a one-node quorum, RF 1 for
# the offsets and transaction logs. A node of a three-node cluster must set every one of them.
KAFKA_IMAGE_SANDBOX_DEFAULTS = {
    "CLUSTER_ID",
    "KAFKA_NODE_ID",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
    "KAFKA_INTER_BROKER_LISTENER_NAME",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_LOG_DIRS",
}

_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])|(?=\}))|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`,
    `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+other}`, with variables nested in
    the default (as compose-go allows)."""
    out: list[str] = []
    i = 0
    while (match := _VARIABLE.search(text, i)) is not None:
        out.append(text[i : match.start()])
        escaped, braced, operator, bare = match.groups()
        if escaped:
            out.append("$")
            i = match.end()
            continue
        if bare:
            out.append(env.get(bare, ""))
            i = match.end()
            continue
        if operator is None:  # ${VAR}
            out.append(env.get(braced, ""))
            i = match.end() + 1
            continue
        # The word after the operator runs to the matching close brace (it may hold ${...}).
        depth, j = 1, match.end()
        while depth:
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth -= text[j] == "}"
            j += 1
        word = interpolate(text[match.end() : j - 1], env)
        value = env.get(braced)
        unset_or_empty = not value if operator.startswith(":") else value is None
        if operator.endswith("-"):
            out.append(word if unset_or_empty else str(value))
        elif operator.endswith("?"):
            if unset_or_empty:
                raise ValueError(f"required variable {braced} is missing: {word}")
            out.append(str(value))
        else:  # +
            out.append("" if unset_or_empty else word)
        i = j
    out.append(text[i:])
    return "".join(out)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    """Every string of a loaded compose file interpolated (keys are left as they are, as in Compose)."""
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


@cache
def compose() -> dict[str, Any]:
    """docker-compose.yml as Compose sees it with no variable set: YAML merge keys resolved, defaults used."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    result: dict[str, Any] = interpolated(loaded, {})
    return result


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose accepts a mapping or a list of KEY=VALUE)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on", {})
    return {name: {} for name in deps} if isinstance(deps, list) else dict(deps)


def one_shots() -> set[str]:
    """Services that run to completion: never restarted, and awaited as completed by another."""
    awaited = {
        name
        for service in services().values()
        for name, dep in depends_on(service).items()
        if dep.get("condition") == "service_completed_successfully"
    }
    return {name for name in awaited if services()[name].get("restart") == "no"}


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    errors = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in Draft202012Validator(schema).iter_errors(compose())
    ]
    assert errors == []


def test_the_schema_check_catches_a_broken_file() -> None:
    """The validation above is not vacuous: a misspelt key and a wrong type are reported."""
    broken = {**compose(), "services": {**services(), "api": {**services()["api"], "helthcheck": {}}}}
    broken["services"]["postgres"] = {**services()["postgres"], "ports": "5432"}
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    paths = {tuple(error.absolute_path) for error in validator.iter_errors(broken)}
    assert ("services", "api") in paths
    assert ("services", "postgres", "ports") in paths


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}|${UNSET:-d}|${EMPTY:-d}|${EMPTY-d}|$$SET|$SET", env) == "x|d|d||$SET|x"
    assert interpolate("a${UNSET:-b${SET:-c}d}e", env) == "abxde"
    assert interpolate("${SET:+alt}|${UNSET:+alt}", env) == "alt|"
    with pytest.raises(ValueError, match="UNSET"):
        interpolate("${UNSET:?set it}", env)


def test_every_coursecast_variable_set_is_a_real_setting() -> None:
    known = {f"COURSECAST_{name.upper()}" for name in Settings.model_fields}
    set_in_compose = {
        f"{name}: {key}"
        for name, service in services().items()
        for key in environment(service)
        if key.startswith("COURSECAST_") and key not in known
    }
    set_in_image = {
        key
        for stage in dockerfile_stages()
        for line in stage
        if line.upper().startswith("ENV ")
        for key in re.findall(r"(COURSECAST_[A-Z0-9_]+)=", line)
        if key not in known
    }
    assert set_in_compose == set()
    assert set_in_image == set()


def test_the_services_settings_are_accepted_by_the_settings_model() -> None:
    """What the file sets is not only named right but valid (types, the G2/G3 validators)."""
    checked = 0
    for service in services().values():
        values = {
            key.removeprefix("COURSECAST_").lower(): value
            for key, value in environment(service).items()
            if key.startswith("COURSECAST_")
        }
        if values:
            settings = Settings.model_validate(values)
            assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
            checked += 1
    assert checked == 7  # init, api, encoder, conductor, projector, watchdog, notifier


def test_every_image_is_pinned_to_a_version_or_digest() -> None:
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    unpinned: list[str] = []
    for name, service in services().items():
        image: str = service["image"]
        if "build" in service:
            # Built from this checkout: tagged with the project's version, never "latest".
            if image.rsplit(":", 1)[-1] != version:
                unpinned.append(f"{name}: {image} (built here: tag it {version})")
            continue
        if "@sha256:" in image:
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        if not tag or tag == "latest" or not re.search(r"\d", tag):
            unpinned.append(f"{name}: {image}")
    base_images = [stage[0].split()[1] for stage in dockerfile_stages()]
    unpinned += [f"Dockerfile: {image}" for image in base_images if not re.search(r":\S*\d", image)]
    assert unpinned == []


def test_kafka_is_three_kraft_nodes_of_the_local_stacks_version_with_logs_on_named_volumes() -> None:
    pom = "{http://maven.apache.org/POM/4.0.0}"
    version = ET.parse(KAFKA_POM).getroot().findtext(f"{pom}properties/{pom}kafka.version")
    assert version
    kafka = [name for name, service in services().items() if service["image"].startswith("apache/kafka:")]
    assert sorted(kafka) == KAFKA_NODES
    named_volumes = set(compose().get("volumes", {}))
    for name in kafka:
        service = services()[name]
        env = environment(service)
        assert service["image"] == f"apache/kafka:{version}"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert KAFKA_IMAGE_SANDBOX_DEFAULTS - set(env) == set()
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert (
            env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"],
            env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"],
        ) == ("3", "2")
        # A KRaft cluster id is a UUID in URL-safe base64 without padding: 22 characters, 16 bytes.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
        assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
        # The image passes it as `--cluster-id=…`; Kafka never issues one that reads as a flag.
        assert not env["CLUSTER_ID"].startswith("-")
        mounts = [volume.split(":") for volume in service["volumes"]]
        assert [source for source, target in mounts if target == env["KAFKA_LOG_DIRS"]] == [name]
        assert name in named_volumes
    node_ids = {environment(services()[name])["KAFKA_NODE_ID"] for name in kafka}
    assert node_ids == {"1", "2", "3"}


def test_every_long_running_service_has_a_healthcheck_and_one_shots_are_awaited() -> None:
    missing = [
        name
        for name, service in services().items()
        if name not in one_shots()
        and (not service.get("healthcheck") or service["healthcheck"].get("disable"))
    ]
    assert missing == []
    assert one_shots() == {"init"}


def test_every_dependency_waits_on_a_condition_the_other_service_can_meet() -> None:
    problems: list[str] = []
    for name, service in services().items():
        for other, dep in depends_on(service).items():
            condition = dep.get("condition")
            if condition not in WAITING_CONDITIONS:
                problems.append(f"{name} → {other}: condition {condition!r}")
            elif condition == "service_healthy" and not services()[other].get("healthcheck"):
                problems.append(f"{name} → {other}: waits for health it has no check for")
            elif condition == "service_completed_successfully" and services()[other].get("restart") != "no":
                problems.append(f"{name} → {other}: waits for the end of a service that restarts")
    assert problems == []


def test_init_waits_for_every_broker_postgres_and_s3_and_every_service_waits_for_init() -> None:
    init = services()["init"]
    assert init["command"] == ["init"]
    assert {name for name, dep in depends_on(init).items() if dep["condition"] == "service_healthy"} == {
        *KAFKA_NODES,
        "postgres",
        "s3",
    }
    coursecast = [name for name, service in services().items() if "build" in service and name != "init"]
    assert sorted(coursecast) == ["api", "conductor", "encoder", "notifier", "projector", "watchdog"]
    for name in coursecast:
        assert depends_on(services()[name])["init"]["condition"] == "service_completed_successfully"


def test_services_scale_and_clients_get_reachable_urls() -> None:
    for name, service in services().items():
        # A fixed container name allows one container: `--scale` would fail.
        assert "container_name" not in service, name
    api_ports = [str(port) for port in services()["api"]["ports"]]
    assert all(re.fullmatch(r"\d+-\d+:8000", port) for port in api_ports), api_ports
    for worker in ("encoder", "conductor", "projector", "watchdog", "notifier"):
        assert "ports" not in services()[worker]
    env = environment(services()["api"])
    # The services reach S3 by its container name, clients by an address published on the host.
    assert env["COURSECAST_S3_ENDPOINT_URL"] == "http://s3:9000"
    assert env["COURSECAST_S3_PUBLIC_URL"] == "http://localhost:9000"
    assert env["COURSECAST_CDN_BASE_URL"] == f"http://localhost:9000/{env['COURSECAST_S3_BUCKET']}"
    assert "9000:9000" in services()["s3"]["ports"]


def test_the_watchdog_keeps_its_state_on_a_named_volume_the_image_prepares_for_its_user() -> None:
    watchdog = services()["watchdog"]
    data_dir = environment(watchdog)["COURSECAST_WATCHDOG_DATA_DIR"]
    mounts = [volume.split(":") for volume in watchdog["volumes"]]
    assert [source for source, target in mounts if target == data_dir] == ["watchdog"]
    assert "watchdog" in compose()["volumes"]
    final = " ".join(dockerfile_stages()[-1])
    assert f"mkdir -p {data_dir}" in final
    assert re.search(rf"chown -R coursecast:coursecast {Path(data_dir).parent}\b", final)


def test_the_images_final_stage_runs_a_plain_install_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER: it would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    installs = [line for line in final if line.upper().startswith("RUN ") and "pip install" in line]
    assert installs
    for line in installs:
        assert not re.search(r"\s(-e|--editable)(\s|=)", line), line
    assert any(re.search(r"pip install .*\bcoursecast\b", line) for line in installs)


def test_dockerignore_keeps_local_state_out_and_what_the_build_needs_in() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    ignored = {line for line in lines if line and not line.startswith("#")}
    assert {".git", ".venv", ".cache", ".env"} <= ignored
    copied = {
        path
        for stage in dockerfile_stages()
        for line in stage
        if line.upper().startswith("COPY ") and "--from=" not in line
        for path in line.split()[1:-1]
    }
    assert copied == {"pyproject.toml", "setup.py", "README.md", "services", "schemas"}
    assert copied.isdisjoint(ignored)


def test_docker_compose_parses_the_file_when_it_is_installed() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: the JSON Schema check above stands alone")
    if subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("the docker client has no compose plugin: the JSON Schema check above stands alone")
    result = subprocess.run(
        [docker, "compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
