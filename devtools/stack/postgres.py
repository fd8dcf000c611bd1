"""The stack's own Postgres cluster under stack_dir, run as the postgres user on database_url's port."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from devtools.stack import processes
from devtools.stack.layout import StackLayout
from devtools.stack.model import INSTALL_HINT, LOOPBACK, ComponentStatus, Echo, StackError
from services.core.settings import Settings

SERVER_USER = "postgres"  # the OS user that owns the cluster; Postgres refuses to run as root
SUPERUSER = "postgres"  # the cluster's bootstrap superuser, reached only over the unix socket
HEALTH_TIMEOUT_S = 30.0
CONF_NAME = "coursecast.conf"
# A unix socket path is limited to 107 bytes (sun_path); ".s.PGSQL.<port>" is appended to the dir.
SOCKET_PATH_MAX = 107


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """The role, password, database and port that settings.database_url asks for."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseTarget:
        """Parse database_url; the local stack only serves 127.0.0.1."""
        parts = conninfo_to_dict(settings.database_url)
        host = str(parts.get("host") or LOOPBACK)
        if host not in (LOOPBACK, "localhost"):
            raise StackError(
                f"the local stack runs Postgres on {LOOPBACK} only, but COURSECAST_DATABASE_URL names {host}"
            )
        return cls(
            host=LOOPBACK,
            port=int(parts.get("port") or 5432),
            user=str(parts.get("user") or "coursecast"),
            password=str(parts.get("password") or ""),
            dbname=str(parts.get("dbname") or "coursecast"),
        )

    @property
    def address(self) -> str:
        """host:port for status lines."""
        return f"{self.host}:{self.port}"


def _data_dir(layout: StackLayout) -> Path:
    return layout.postgres_dir / "data"


def _socket_dir(layout: StackLayout) -> Path:
    return layout.postgres_dir / "socket"


def _log_file(layout: StackLayout) -> Path:
    return layout.logs_dir / "postgres.log"


def bin_dir() -> Path:
    """The newest Debian-installed server binaries (/usr/lib/postgresql/<major>/bin)."""
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    if not candidates:
        raise StackError(f"Postgres server not found (/usr/lib/postgresql/*/bin/pg_ctl): {INSTALL_HINT}")

    def major(path: Path) -> int:
        match = re.fullmatch(r"\d+", path.parent.name)
        return int(match.group()) if match else 0

    return max(candidates, key=major)


def _as_server_user(argv: list[str]) -> list[str]:
    # As root, every server binary runs as the postgres user; otherwise as the caller, which
    # Postgres accepts (it only refuses root).
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)


def running(layout: StackLayout) -> bool:
    """True if our cluster's postmaster is alive (pg_ctl status reads its postmaster.pid)."""
    if not (_data_dir(layout) / "PG_VERSION").is_file():
        return False
    try:
        processes.run_checked(
            _as_server_user([str(bin_dir() / "pg_ctl"), "status", "-D", str(_data_dir(layout))]),
            what="pg_ctl status",
            timeout_s=10,
        )
    except StackError:
        return False
    return True


def _init(layout: StackLayout, echo: Echo) -> None:
    data = _data_dir(layout)
    echo(f"postgres: initdb {data}")
    layout.postgres_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(layout.postgres_dir)
    shutil.rmtree(data, ignore_errors=True)  # a half-done initdb is redone from scratch
    processes.run_checked(
        _as_server_user(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                # The superuser is reachable only through our socket directory; over TCP every
                # role proves its password, as it would against a real server.
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        ),
        what="initdb",
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\n# The local stack's settings, rewritten by services/stack/postgres.py on start.\n"
            f"include_if_exists = '{CONF_NAME}'\n"
        )


def _write_conf(layout: StackLayout, target: DatabaseTarget) -> None:
    socket_dir = _socket_dir(layout)
    if len(f"{socket_dir}/.s.PGSQL.{target.port}") > SOCKET_PATH_MAX:
        raise StackError(
            f"stack_dir is too deep for a unix socket path ({socket_dir}); set COURSECAST_STACK_DIR"
        )
    socket_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(socket_dir)
    conf = _data_dir(layout) / CONF_NAME
    conf.write_text(
        "\n".join(
            [
                f"listen_addresses = '{LOOPBACK}'",
                f"port = {target.port}",
                f"unix_socket_directories = '{socket_dir}'",
                # Durability stays as in production (fsync on): G3's "Postgres committed" means
                # on disk, here too. The projector commits once per batch, so it costs little.
                "max_connections = 200",
                "",
            ]
        )
    )
    _give_to_server_user(conf)


def preflight(settings: Settings, layout: StackLayout) -> None:
    """Refuse to go on if database_url's port is taken by anything but our cluster."""
    target = DatabaseTarget.from_settings(settings)
    if not running(layout) and processes.port_in_use(LOOPBACK, target.port):
        raise StackError(
            f"port {target.port} is in use by a Postgres (or other process) that the stack did not start; "
            f"stop it (Debian's own cluster: `pg_ctlcluster <version> main stop`) or point "
            f"COURSECAST_DATABASE_URL at another port"
        )


def start(settings: Settings, layout: StackLayout, echo: Echo) -> bool:
    """Start our cluster (initdb on first use) unless it runs; True if it was started now."""
    target = DatabaseTarget.from_settings(settings)
    if not (_data_dir(layout) / "PG_VERSION").is_file():
        _init(layout, echo)
    if running(layout):
        echo(f"postgres: already running at {target.address}")
        return False
    preflight(settings, layout)
    _write_conf(layout, target)
    log = _log_file(layout)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    _give_to_server_user(log)
    # -W: do not wait here; the health wait below runs while Kafka and S3 start too. pg_ctl puts
    # the postmaster in its own session, so it outlives this process and its terminal.
    processes.run_checked(
        _as_server_user(
            [str(bin_dir() / "pg_ctl"), "start", "-W", "-s", "-D", str(_data_dir(layout)), "-l", str(log)]
        ),
        what="pg_ctl start",
    )
    echo(f"postgres: started at {target.address}")
    return True


def _superuser_connect(layout: StackLayout, target: DatabaseTarget) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=str(_socket_dir(layout)),
        port=target.port,
        user=SUPERUSER,
        dbname="postgres",
        autocommit=True,
        connect_timeout=3,
    )


def ensure_database(layout: StackLayout, target: DatabaseTarget) -> list[str]:
    """Create the role and database if missing; the role's password always matches database_url."""
    created = []
    with _superuser_connect(layout, target) as conn:
        role = sql.Identifier(target.user)
        password = sql.Literal(target.password)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (target.user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, password))
            created.append(f"role {target.user}")
        else:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, password))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(target.dbname), role))
            created.append(f"database {target.dbname}")
    return created


def select_one(settings: Settings) -> str:
    """Run SELECT 1 as the application role over TCP; returns the server version."""
    with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
        row = conn.execute("SELECT 1, current_setting('server_version')").fetchone()
    if row is None or row[0] != 1:
        raise StackError("SELECT 1 returned no row")
    return str(row[1])


def wait_healthy(settings: Settings, layout: StackLayout, timeout_s: float = HEALTH_TIMEOUT_S) -> list[str]:
    """Wait until the superuser can connect, ensure role and database, then prove SELECT 1 as the app."""
    target = DatabaseTarget.from_settings(settings)
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        try:
            created = ensure_database(layout, target)
            select_one(settings)
            return created
        except psycopg.OperationalError as exc:
            error = str(exc).strip()
        # The postmaster writes its pid file within a second; after that a missing one means it died.
        if time.monotonic() - started > 3 and not running(layout):
            log = _log_file(layout)
            raise StackError(f"postgres exited during startup; see {log}\n{processes.log_tail(log)}")
        if time.monotonic() >= deadline:
            raise StackError(
                f"postgres did not answer within {timeout_s:.0f} s ({error}); see {_log_file(layout)}"
            )
        time.sleep(0.3)


def stop(layout: StackLayout, echo: Echo) -> None:
    """Fast shutdown of our cluster (open sessions are rolled back); other Postgres servers are untouched."""
    if not running(layout):
        return
    pg_ctl = [str(bin_dir() / "pg_ctl"), "-D", str(_data_dir(layout))]
    processes.run_checked(
        _as_server_user([*pg_ctl, "stop", "-m", "fast", "-w", "-t", "60", "-s"]),
        what="pg_ctl stop",
        timeout_s=90,
    )
    echo("postgres: stopped")


def status(settings: Settings, layout: StackLayout) -> ComponentStatus:
    """Whether SELECT 1 succeeds as the application role, and whether the server is ours."""
    target = DatabaseTarget.from_settings(settings)
    ours = running(layout)
    try:
        version = select_one(settings)
    except psycopg.Error as exc:
        detail = (
            "not running (python -m devtools stack up)"
            if not ours
            else f"running, but SELECT 1 failed: {exc}"
        )
        return ComponentStatus("postgres", target.address, False, detail.strip())
    owner = "" if ours else ", not started by the stack"
    return ComponentStatus("postgres", target.address, True, f"Postgres {version}, SELECT 1 ok{owner}")
