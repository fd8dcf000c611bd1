#!/usr/bin/env bash
# Install what the local CourseCast stack needs, and nothing that is already there.
#
#   - checks Java 17+ and Maven (never installs them: they are the machine's choice);
#   - apt-installs ffmpeg, postgresql and chromium (the dashboard's browser test) only when missing
#     (one `apt-get update` at most);
#   - assembles the Kafka classpath from Maven Central into <stack_dir>/kafka/lib, only when the
#     marker for the Kafka version in devtools/stack/kafka/pom.xml is missing.
#
# Safe to run again and again: with everything present it checks and exits in about a second.
# The stack directory follows COURSECAST_STACK_DIR, like services/core/settings.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${COURSECAST_STACK_DIR:-$ROOT/.cache/stack}"
POM="$ROOT/devtools/stack/kafka/pom.xml"
KAFKA_LIB="$STACK_DIR/kafka/lib"

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# --- Java 17+ and Maven --------------------------------------------------------------------------
java_major() {
    # `java -version` prints e.g. `openjdk version "17.0.12" 2024-07-16` (or "1.8.0_x" for Java 8).
    java -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\)\(\.[0-9]*\)*.*".*/\1/p' | head -n 1
}
command -v java >/dev/null 2>&1 || die "Java 17+ not found: apt-get install openjdk-17-jre-headless"
major="$(java_major)"
if [[ -z "$major" || "$major" -lt 17 ]]; then
    die "Java 17+ not found (found version '${major:-unknown}'): apt-get install openjdk-17-jre-headless"
fi
command -v mvn >/dev/null 2>&1 || die "Maven not found: apt-get install maven"

# --- apt packages: ffmpeg, postgresql, chromium ----------------------------------------------------
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; }
missing=()
{ command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || missing+=(ffmpeg)
have_postgres || missing+=(postgresql)
# Debian's chromium, driven by Playwright through executable_path (Playwright's download is not used).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if ((${#missing[@]} > 0)); then
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root to apt-get install ${missing[*]}"
        SUDO=(sudo)
    fi
    say "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_lsclusters >/dev/null 2>&1; then
        # Debian creates and may start a system cluster ("main") on 5432; the stack runs its own
        # cluster on that port, so the system one is stopped and set to manual start.
        while read -r ver name _; do
            "${SUDO[@]}" pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
            conf="/etc/postgresql/$ver/$name/start.conf"
            [[ -f "$conf" ]] && echo manual | "${SUDO[@]}" tee "$conf" >/dev/null
            say "stopped Debian's default cluster $ver/$name (set to manual start)"
        done < <(pg_lsclusters -h 2>/dev/null)
    fi
else
    say "ffmpeg, postgresql and chromium present"
fi

# --- Kafka classpath from Maven Central ----------------------------------------------------------
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)"
[[ -n "$kafka_version" ]] || die "cannot read <kafka.version> from $POM"
marker="$KAFKA_LIB/.assembled-kafka-$kafka_version"

if [[ -f "$marker" ]]; then
    say "Kafka $kafka_version jars present in $KAFKA_LIB"
else
    say "assembling Kafka $kafka_version jars into $KAFKA_LIB"
    # Assemble into a fresh folder and swap it in, so an interrupted run never leaves a half
    # classpath that looks complete; an old version's jars are removed rather than mixed in.
    tmp="$STACK_DIR/kafka/lib.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    mvn_log="$STACK_DIR/kafka/mvn.log"
    if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail -n 40 "$mvn_log" >&2
        die "mvn could not assemble Kafka $kafka_version (full log: $mvn_log)"
    fi
    jars=$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)
    compgen -G "$tmp/kafka_2.13-$kafka_version.jar" >/dev/null || die "kafka_2.13-$kafka_version.jar missing after mvn"
    touch "$tmp/.assembled-kafka-$kafka_version"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    trap - EXIT
    say "Kafka $kafka_version: $jars jars"
fi

say "done (java $major, $(ffmpeg -version 2>/dev/null | head -n 1 | cut -d' ' -f1-3))"
