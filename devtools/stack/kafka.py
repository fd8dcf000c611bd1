"""Apache Kafka in KRaft mode on loopback: one combined node, or a three-node cluster for fault tests."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devtools.stack import processes
from devtools.stack.layout import STACK_SOURCES, StackLayout
from devtools.stack.model import INSTALL_HINT, LOOPBACK, ComponentStatus, Echo, StackError
from services.core.kafka_config import admin_config_for
from services.core.settings import Settings

SUPPORTED_BROKERS = (1, 3)
# Node n's controller listens CONTROLLER_PORT_OFFSET above its broker port: 9092 -> 19092.
CONTROLLER_PORT_OFFSET = 10_000
HEALTH_TIMEOUT_S = 90.0
# A broker's controlled shutdown moves partition leadership first; past this it is killed.
STOP_GRACE_S = 30.0
# How long a restarted node has to write its first log line (or be seen running) before it counts
# as having died without a word.
RESTART_WORD_S = 15.0
# How long a node found not running is watched again before it counts as exited.
RUNNING_RECHECK_S = 1.5
POM = STACK_SOURCES / "kafka" / "pom.xml"
LOG4J2_CONFIG = STACK_SOURCES / "kafka" / "log4j2.yaml"
STATE_FILE = "kafka.json"


@dataclass(frozen=True, slots=True)
class KafkaNode:
    """One combined broker+controller JVM: its ports and its folder (config and data)."""

    node_id: int
    broker_port: int
    controller_port: int
    home: Path

    @property
    def address(self) -> str:
        """The broker listener clients connect to."""
        return f"{LOOPBACK}:{self.broker_port}"

    @property
    def properties(self) -> Path:
        """The node's server.properties (its path also identifies the node's process)."""
        return self.home / "server.properties"

    @property
    def log_dir(self) -> Path:
        """The node's Kafka data (log.dirs), holding meta.properties once formatted."""
        return self.home / "data"


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    """A Kafka mode: 1 node (RF 1) or 3 nodes forming a 3-voter controller quorum (RF 3, min ISR 2)."""

    brokers: int
    home: Path
    nodes: tuple[KafkaNode, ...]

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers naming every broker, so clients survive any single broker's loss."""
        return ",".join(node.address for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        """Replicas per partition: every broker holds every partition."""
        return self.brokers

    @property
    def min_insync_replicas(self) -> int:
        """With 3 replicas an acks=all write needs 2 of them, so one broker can be lost (G3)."""
        return 1 if self.brokers == 1 else 2

    def to_json(self) -> str:
        """The state file's content: enough to find, check and stop this mode without settings."""
        return json.dumps(
            {
                "brokers": self.brokers,
                "bootstrap": self.bootstrap,
                "home": str(self.home),
                "nodes": [
                    [node.node_id, node.broker_port, node.controller_port, str(node.home)]
                    for node in self.nodes
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> KafkaCluster:
        """Inverse of to_json."""
        raw = json.loads(text)
        nodes = tuple(KafkaNode(int(i), int(b), int(c), Path(h)) for i, b, c, h in raw["nodes"])
        return cls(brokers=int(raw["brokers"]), home=Path(raw["home"]), nodes=nodes)


def plan(settings: Settings, layout: StackLayout, brokers: int) -> KafkaCluster:
    """The cluster for a mode; broker ports count up from the port in kafka_bootstrap_servers."""
    if brokers not in SUPPORTED_BROKERS:
        raise StackError(f"--brokers must be one of {SUPPORTED_BROKERS}, not {brokers}")
    first = settings.kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if host not in (LOOPBACK, "localhost") or not port.isdigit():
        raise StackError(
            f"the local stack runs Kafka on {LOOPBACK} only, but COURSECAST_KAFKA_BOOTSTRAP_SERVERS "
            f"is {settings.kafka_bootstrap_servers!r}"
        )
    # The controller quorum's addresses are written into the formatted metadata, so a data folder
    # belongs to one mode *and* one set of ports: another port plan gets a folder (and format) of its own.
    home = layout.kafka_data / f"brokers-{brokers}-port-{port}"
    nodes = tuple(
        KafkaNode(
            node_id=i + 1,
            broker_port=int(port) + i,
            controller_port=int(port) + i + CONTROLLER_PORT_OFFSET,
            home=home / f"node-{i + 1}",
        )
        for i in range(brokers)
    )
    return KafkaCluster(brokers=brokers, home=home, nodes=nodes)


def topic_settings(settings: Settings, cluster: KafkaCluster) -> Settings:
    """Settings whose Kafka fields match the cluster: all its brokers, its RF and min ISR."""
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": cluster.bootstrap,
            "topic_replication_factor": cluster.replication_factor,
            "topic_min_insync_replicas": cluster.min_insync_replicas,
        }
    )


# --- installation checks -------------------------------------------------------------------------


def kafka_version() -> str:
    """The Kafka version pinned in stack/kafka/pom.xml."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    if not version:
        raise StackError(f"no <kafka.version> in {POM}")
    return version.strip()


def classpath(layout: StackLayout) -> str:
    """The JVM classpath of the assembled jars; refuses a missing or half-assembled folder."""
    version = kafka_version()
    if not (layout.kafka_lib / f".assembled-kafka-{version}").is_file():
        raise StackError(f"Kafka {version} jars not found in {layout.kafka_lib}: {INSTALL_HINT}")
    return f"{layout.kafka_lib}/*"


def java_binary() -> str:
    """The java launcher on PATH."""
    java = shutil.which("java")
    if java is None:
        raise StackError("Java 17+ not found: apt-get install openjdk-17-jre-headless")
    return java


# --- state ---------------------------------------------------------------------------------------


def _pid_file(layout: StackLayout, node: KafkaNode) -> Path:
    return layout.run_dir / f"kafka-node-{node.node_id}.pid"


def _log_files(layout: StackLayout, cluster: KafkaCluster, node: KafkaNode) -> tuple[Path, Path]:
    stem = layout.logs_dir / f"kafka-{cluster.brokers}b-node-{node.node_id}"
    return stem.with_suffix(".log"), stem.with_suffix(".out")


def running_cluster(layout: StackLayout) -> KafkaCluster | None:
    """The mode `up` last started (some nodes may have died since), or None."""
    try:
        return KafkaCluster.from_json((layout.run_dir / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def node_running(layout: StackLayout, node: KafkaNode) -> bool:
    """True if the node's JVM that we started is alive."""
    record = processes.read_record(_pid_file(layout, node))
    return record is not None and record.marker == str(node.properties) and processes.is_running(record)


# --- format and start ----------------------------------------------------------------------------


def _kafka_uuid() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes without padding; Kafka itself
    # never issues one starting with '-', since it would read as a command-line flag.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _properties(cluster: KafkaCluster, node: KafkaNode) -> str:
    rf, isr = cluster.replication_factor, cluster.min_insync_replicas
    quorum = ",".join(f"{LOOPBACK}:{n.controller_port}" for n in cluster.nodes)
    lines = [
        "# Written by services/stack/kafka.py on every start; edit the code, not this file.",
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.bootstrap.servers={quorum}",
        f"listeners=PLAINTEXT://{LOOPBACK}:{node.broker_port},CONTROLLER://{LOOPBACK}:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{node.broker_port},"
        f"CONTROLLER://{LOOPBACK}:{node.controller_port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        f"log.dirs={node.log_dir}",
        # Topics exist only because services.core.topics created them with their guarantees.
        "auto.create.topics.enable=false",
        "unclean.leader.election.enable=false",
        f"default.replication.factor={rf}",
        f"min.insync.replicas={isr}",
        # Internal topics replicate like ours; fewer partitions than the defaults (50) keep the
        # first consumer group and first transaction fast on a small machine.
        f"offsets.topic.replication.factor={rf}",
        "offsets.topic.num.partitions=10",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={isr}",
        "transaction.state.log.num.partitions=10",
        f"share.coordinator.state.topic.replication.factor={rf}",
        f"share.coordinator.state.topic.min.isr={isr}",
        # A consumer group's first member gets its partitions at once instead of after 3 s.
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=4",
    ]
    return "\n".join(lines) + "\n"


def _is_formatted(cluster: KafkaCluster) -> bool:
    return all((node.log_dir / "meta.properties").is_file() for node in cluster.nodes)


def _tool_argv(layout: StackLayout, *args: str) -> list[str]:
    return [
        java_binary(),
        "-Xmx256m",
        # Short-lived tool: skip the optimising JIT, which only slows a two-second run.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dcoursecast.kafka.log.file={layout.logs_dir / 'kafka-storage-tool.log'}",
        "-cp",
        classpath(layout),
        "kafka.tools.StorageTool",
        *args,
    ]


def _format(layout: StackLayout, cluster: KafkaCluster, echo: Echo) -> None:
    """Format every node's storage for a new cluster id (a half-formatted cluster is wiped first)."""
    shutil.rmtree(cluster.home, ignore_errors=True)
    cluster_id = _kafka_uuid()
    if cluster.brokers == 1:
        extras = [["--standalone"]]
    else:
        # Each voter is named with the directory id its metadata log will carry, so all three
        # nodes agree on the initial 3-voter quorum from the first start.
        directory_ids = [_kafka_uuid() for _ in cluster.nodes]
        voters = ",".join(
            f"{n.node_id}@{LOOPBACK}:{n.controller_port}:{d}"
            for n, d in zip(cluster.nodes, directory_ids, strict=True)
        )
        extras = [["--initial-controllers", voters] for _ in cluster.nodes]
    echo(f"kafka: formatting {cluster.brokers}-node cluster {cluster_id}")
    tools: list[tuple[KafkaNode, subprocess.Popen[str]]] = []
    for node, extra in zip(cluster.nodes, extras, strict=True):
        node.home.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(_properties(cluster, node))
        argv = _tool_argv(layout, "format", "-t", cluster_id, "-c", str(node.properties), *extra)
        tools.append(
            (node, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        )
    failures = []
    for node, tool in tools:
        output, _ = tool.communicate(timeout=120)
        if tool.returncode != 0:
            failures.append(f"node {node.node_id}: {output.strip()}")
    if failures:
        shutil.rmtree(cluster.home, ignore_errors=True)
        raise StackError("kafka storage format failed:\n" + "\n".join(failures))
    (cluster.home / "cluster.id").write_text(cluster_id + "\n")


def _start_node(layout: StackLayout, cluster: KafkaCluster, node: KafkaNode) -> None:
    # One JVM per node; 3 nodes at 512 MB max heap each fit a 2-core CI machine.
    heap = ["-Xms512m", "-Xmx1g"] if cluster.brokers == 1 else ["-Xms256m", "-Xmx512m"]
    log_file, out_file = _log_files(layout, cluster, node)
    argv = [
        java_binary(),
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dcoursecast.kafka.log.file={log_file}",
        "-cp",
        classpath(layout),
        "kafka.Kafka",
        str(node.properties),
    ]
    node.properties.write_text(_properties(cluster, node))
    processes.spawn_detached(
        f"kafka node {node.node_id}",
        argv,
        log_path=out_file,
        pid_file=_pid_file(layout, node),
        marker=str(node.properties),
        cwd=node.home,
    )


def _restart_node(layout: StackLayout, cluster: KafkaCluster, node: KafkaNode, echo: Echo) -> None:
    """Start a stopped node again, and once more if its JVM dies before it writes a line.

    In two full-suite runs from a fresh clone (and once more later), a node restarted right after a
    kill -9 was gone a moment later without a line in its log or on its stdout, and was never seen
    to do so when run alone. A JVM that exits without a word has not started: it is started once
    more. A node that logged anything and then exited is left dead, for wait_healthy to report.
    """
    log_file, _ = _log_files(layout, cluster, node)

    def logged_since(size: int) -> bool:
        return log_file.exists() and log_file.stat().st_size > size

    for attempt in (1, 2):
        before = log_file.stat().st_size if log_file.exists() else 0
        _start_node(layout, cluster, node)
        processes.wait_for(
            lambda: not node_running(layout, node) or logged_since(before),  # noqa: B023 (waited on here)
            timeout_s=RESTART_WORD_S,
            interval_s=0.1,
        )
        if node_running(layout, node) or logged_since(before):
            return
        if attempt == 1:
            echo(f"kafka: node {node.node_id} exited before writing a line; starting it once more")


def _refuse_foreign_ports(cluster: KafkaCluster, nodes: tuple[KafkaNode, ...]) -> None:
    for node in nodes:
        for port in (node.broker_port, node.controller_port):
            if processes.port_in_use(LOOPBACK, port):
                raise StackError(
                    f"port {port} (kafka node {node.node_id}, {cluster.brokers}-broker mode) is in use by "
                    f"a process the stack did not start; stop it (see `ss -ltnp 'sport = :{port}'`)"
                )


def start(settings: Settings, layout: StackLayout, brokers: int, echo: Echo) -> KafkaCluster:
    """Start the requested mode unless it already runs; another running mode is stopped first."""
    wanted = plan(settings, layout, brokers)
    current = running_cluster(layout)
    if current is not None and current.brokers != brokers:
        if any(node_running(layout, node) for node in current.nodes):
            echo(
                f"kafka: {current.brokers}-broker mode is running; stopping it to start {brokers}-broker mode"
            )
        stop(layout, echo)
        current = None
    if current is not None:
        dead = tuple(node for node in current.nodes if not node_running(layout, node))
        if not dead:
            echo(f"kafka: already running ({current.brokers} broker(s) at {current.bootstrap})")
            return current
        # Nodes stopped by a fault test (or a crash) rejoin; the live ones are left alone.
        _refuse_foreign_ports(current, dead)
        for node in dead:
            echo(f"kafka: restarting node {node.node_id} at {node.address}")
            _restart_node(layout, current, node, echo)
        return current
    _refuse_foreign_ports(wanted, wanted.nodes)
    classpath(layout)  # fail on missing jars before formatting anything
    if not _is_formatted(wanted):
        _format(layout, wanted, echo)
    (layout.run_dir / STATE_FILE).write_text(wanted.to_json())
    for node in wanted.nodes:
        _start_node(layout, wanted, node)
    echo(f"kafka: started {brokers} broker(s) at {wanted.bootstrap}")
    return wanted


def stop(layout: StackLayout, echo: Echo) -> None:
    """Stop every node of the mode `up` started (in parallel: a lone survivor would wait for quorum)."""
    cluster = running_cluster(layout)
    if cluster is None:
        return
    with ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
        outcomes = list(
            pool.map(
                lambda node: processes.stop_pid_file(_pid_file(layout, node), grace_s=STOP_GRACE_S),
                cluster.nodes,
            )
        )
    for node, outcome in zip(cluster.nodes, outcomes, strict=True):
        if outcome is not None:
            echo(f"kafka node {node.node_id}: {outcome}")
    (layout.run_dir / STATE_FILE).unlink(missing_ok=True)


def stop_node(layout: StackLayout, node_id: int, *, kill: bool = False) -> str:
    """Stop one node of the running mode (fault tests); `up` with the same --brokers restarts it."""
    cluster = running_cluster(layout)
    node = next((n for n in (cluster.nodes if cluster else ()) if n.node_id == node_id), None)
    if node is None:
        raise StackError(f"no kafka node {node_id} in the running mode")
    record = processes.read_record(_pid_file(layout, node))
    if record is None:
        return "not running"
    return processes.stop(record, grace_s=STOP_GRACE_S, kill=kill)


# --- health and topics ---------------------------------------------------------------------------


def _quiet_logger() -> logging.Logger:
    # librdkafka reports every refused connection; while a broker is starting that is expected
    # noise, so the health checks' clients log nowhere.
    logger = logging.getLogger("devtools.stack.kafka.client")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(admin_config_for(bootstrap, "stack"), logger=_quiet_logger())


def registered_brokers(bootstrap: str, timeout_s: float) -> dict[int, str]:
    """Broker id -> address, from a real metadata request; empty if no broker answers in time."""
    try:
        metadata = _admin(bootstrap).list_topics(timeout=timeout_s)
    except KafkaException:
        return {}
    return {broker.id: f"{broker.host}:{broker.port}" for broker in metadata.brokers.values()}


def _still_running(layout: StackLayout, node: KafkaNode) -> bool:
    """A second look, over a second, before a node is declared dead: twice a node was reported exited
    at start-up with not a line written anywhere, and ran fine when run again (the cause is not proven;
    a transient read of /proc while the JVM starts is one candidate). A node that really exited is
    still reported, a second later."""
    return processes.wait_for(lambda: node_running(layout, node), timeout_s=RUNNING_RECHECK_S, interval_s=0.2)


def wait_healthy(layout: StackLayout, cluster: KafkaCluster, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Return once a metadata request lists every broker; fail fast if a node's JVM exits."""
    admin = _admin(cluster.bootstrap)
    expected = {node.node_id for node in cluster.nodes}
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        for node in cluster.nodes:
            if not node_running(layout, node) and not _still_running(layout, node):
                log_file, out_file = _log_files(layout, cluster, node)
                tail = processes.log_tail(out_file) or processes.log_tail(log_file)
                proc = processes.describe(processes.read_record(_pid_file(layout, node)))
                raise StackError(
                    f"kafka node {node.node_id} exited ({proc}); see {log_file} and {out_file}\n{tail}"
                )
        try:
            seen = {broker.id for broker in admin.list_topics(timeout=2.0).brokers.values()}
        except KafkaException:
            seen = set()
        if expected <= seen:
            return
        if time.monotonic() >= deadline:
            logs = ", ".join(str(_log_files(layout, cluster, n)[0]) for n in cluster.nodes)
            raise StackError(
                f"kafka did not list all {cluster.brokers} broker(s) within {timeout_s:.0f} s "
                f"(saw {sorted(seen) or 'none'}); see {logs}"
            )
        time.sleep(0.5)


def create_topics(settings: Settings, cluster: KafkaCluster) -> list[str]:
    """Create the project's topics with the cluster's RF and min ISR; returns the names created."""
    # Imported here so `down` and `status` work even while the topic definitions are being edited.
    from services.core.topics import ensure_topics

    return ensure_topics(topic_settings(settings, cluster))


def status(settings: Settings, layout: StackLayout) -> list[ComponentStatus]:
    """One row per broker of the running mode, each checked against live cluster metadata."""
    cluster = running_cluster(layout)
    if cluster is None:
        bootstrap = settings.kafka_bootstrap_servers
        answering = registered_brokers(bootstrap, timeout_s=3.0)
        if answering:
            detail = f"answering, but not started by the stack (brokers {sorted(answering)})"
            return [ComponentStatus("kafka", bootstrap, True, detail)]
        return [ComponentStatus("kafka", bootstrap, False, "not running (python -m devtools stack up)")]
    answering = registered_brokers(cluster.bootstrap, timeout_s=5.0)
    rows = []
    for node in cluster.nodes:
        name = f"kafka broker {node.node_id}" if cluster.brokers > 1 else "kafka"
        alive = node_running(layout, node)
        if not alive:
            # A killed broker stays in the metadata until its session times out (~9 s).
            detail = "not running" + (
                " (still in metadata until fenced)" if node.node_id in answering else ""
            )
        elif node.node_id in answering:
            detail = f"{cluster.brokers}-broker mode, registered in cluster metadata"
        else:
            detail = "process running, not in cluster metadata (starting, or fenced)"
        rows.append(ComponentStatus(name, node.address, node.node_id in answering and alive, detail))
    return rows
