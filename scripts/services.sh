#!/usr/bin/env bash
# Makes sure the real backends the tests talk to are reachable on loopback:
# Redis, PostgreSQL and etcd. Installs the Debian packages that are missing
# (needs root, or sudo) and starts whatever is not running. Safe to run
# again: a second run finds everything up and starts nothing.
#
#   scripts/services.sh          ensure all three are up, print `export` lines
#   scripts/services.sh stop     stop the etcd this script started (Redis and
#                                PostgreSQL are machine services; left alone)
#
# Reads (defaults in brackets):
#   RAMPART_REDIS_URL       [redis://127.0.0.1:6379]
#   RAMPART_POSTGRES_URL    [postgres://postgres@127.0.0.1:5432/test]
#   RAMPART_ETCD_ENDPOINTS  [http://127.0.0.1:2379]  (comma-separated)
#
# Progress goes to stderr; stdout carries only the `export` lines, so
#   eval "$(scripts/services.sh)"
# sets up the current shell. etcd runs from target/etcd (data) and logs to
# target/etcd.log; Redis logs to target/redis.log when started from here.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$REPO_ROOT/target"
ETCD_DATA_DIR="$STATE_DIR/etcd"
ETCD_LOG="$STATE_DIR/etcd.log"
ETCD_PID_FILE="$STATE_DIR/etcd.pid"
ETCD_PEER_URL="http://127.0.0.1:2380"
WAIT_SECS="${RAMPART_SERVICES_WAIT_SECS:-30}"

REDIS_URL="${RAMPART_REDIS_URL:-redis://127.0.0.1:6379}"
POSTGRES_URL="${RAMPART_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
ETCD_ENDPOINTS="${RAMPART_ETCD_ENDPOINTS:-http://127.0.0.1:2379}"

export DEBIAN_FRONTEND=noninteractive

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

# === helpers ===

SUDO=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
fi

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "cannot install $* (no apt-get); install it by hand"
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq >&2 9>&- || die "apt-get update failed (needed to install $*)"
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >&2 9>&- \
        || die "apt-get install $* failed"
}

# Splits "scheme://[user[:pass]@]host[:port][/path][?query]" into
# URL_HOST, URL_PORT (or $2 when absent) and URL_PATH (without "/" or query).
parse_url() {
    local url="$1" default_port="$2" rest hostport
    rest="${url#*://}"
    hostport="${rest%%[/?#]*}"
    hostport="${hostport##*@}"
    URL_PATH=""
    if [[ "$rest" == */* ]]; then
        URL_PATH="${rest#*/}"
        URL_PATH="${URL_PATH%%[?#]*}"
    fi
    if [[ "$hostport" == \[*\]* ]]; then # [::1]:port
        URL_HOST="${hostport%%]*}"
        URL_HOST="${URL_HOST#[}"
        URL_PORT="${hostport##*]}"
        URL_PORT="${URL_PORT#:}"
    elif [[ "$hostport" == *:* ]]; then
        URL_HOST="${hostport%%:*}"
        URL_PORT="${hostport##*:}"
    else
        URL_HOST="$hostport"
        URL_PORT=""
    fi
    [[ -n "$URL_HOST" ]] || URL_HOST="127.0.0.1"
    [[ -n "$URL_PORT" ]] || URL_PORT="$default_port"
}

is_loopback() {
    case "$1" in
        127.* | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s.
wait_for() {
    local secs="$1" what="$2" i
    shift 2
    for ((i = 0; i < secs * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    log "$what did not come up within ${secs}s"
    return 1
}

# === Redis ===

redis_ok() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    [[ "$(timeout 5 redis-cli --no-auth-warning -u "$REDIS_URL" ping 2>/dev/null)" == PONG ]]
}

ensure_redis() {
    # The cache tests also start private redis-servers on spare ports
    # (kill-and-restart), so the binary is needed even when a server is up.
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
    fi
    if redis_ok; then
        log "redis: reachable at $REDIS_URL"
        return 0
    fi
    parse_url "$REDIS_URL" 6379
    is_loopback "$URL_HOST" \
        || die "redis: $REDIS_URL is not reachable and is not on loopback, so this script cannot start it"
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server
        redis_ok && { log "redis: reachable at $REDIS_URL (started by the package)"; return 0; }
    fi
    mkdir -p "$STATE_DIR"
    log "redis: starting redis-server on 127.0.0.1/::1 port $URL_PORT"
    # Bind ::1 only where IPv6 loopback exists ("-::1" makes it optional).
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$URL_PORT" \
        --save "" --appendonly no --logfile "$STATE_DIR/redis.log" >&2 9>&- \
        || die "redis: redis-server failed to start (see $STATE_DIR/redis.log)"
    wait_for 10 redis redis_ok \
        || die "redis: started but $REDIS_URL does not answer PING (see $STATE_DIR/redis.log)"
    log "redis: started, reachable at $REDIS_URL"
}

# === PostgreSQL ===

# The URL with its database replaced by the maintenance database "postgres".
pg_admin_url() {
    local url="$1" base query=""
    if [[ "$url" == *\?* ]]; then
        query="?${url#*\?}"
        url="${url%%\?*}"
    fi
    base="${url#*://}"
    base="${url%%://*}://${base%%/*}"
    printf '%s/postgres%s' "$base" "$query"
}

pg_ready() {
    command -v pg_isready >/dev/null 2>&1 || return 1
    timeout 5 pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

psql_ok() { # URL
    timeout 10 psql "$1" -X -q -tA -c 'select 1' >/dev/null 2>&1
}

# Newest installed PostgreSQL version with a cluster config, e.g. "15".
pg_version() {
    find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

# Local clusters fresh from the Debian package use peer/scram auth; the
# tests connect as postgres over 127.0.0.1 without a password, so allow
# trust on loopback (once; marked so a rerun does not add it again).
pg_trust_loopback() {
    local ver hba
    ver="$(pg_version)"
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    [[ -n "$ver" && -f "$hba" ]] || return 1
    if grep -q 'rampart services.sh' "$hba"; then
        return 1
    fi
    log "postgres: allowing passwordless (trust) connections from 127.0.0.1/32 and ::1/128 in $hba"
    local tmp
    tmp="$(mktemp)"
    {
        echo '# added by rampart services.sh: test clusters trust loopback'
        echo 'host    all    all    127.0.0.1/32    trust'
        echo 'host    all    all    ::1/128         trust'
        cat "$hba"
    } >"$tmp"
    "${SUDO[@]}" cp "$tmp" "$hba"
    rm -f "$tmp"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || return 1
    sleep 1
}

ensure_postgres() {
    parse_url "$POSTGRES_URL" 5432
    PG_HOST="$URL_HOST" PG_PORT="$URL_PORT"
    local db="${URL_PATH:-postgres}" admin
    admin="$(pg_admin_url "$POSTGRES_URL")"

    if command -v psql >/dev/null 2>&1 && pg_ready && psql_ok "$POSTGRES_URL"; then
        log "postgres: reachable at $POSTGRES_URL"
        return 0
    fi
    local local_server=0
    is_loopback "$PG_HOST" && local_server=1

    if ! pg_ready; then
        [[ $local_server -eq 1 ]] \
            || die "postgres: $PG_HOST:$PG_PORT is not accepting connections and is not on loopback, so this script cannot start it"
        if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(pg_version)" ]]; then
            apt_install postgresql
        fi
        if ! pg_ready; then
            local ver
            ver="$(pg_version)"
            [[ -n "$ver" ]] || die "postgres: no cluster under /etc/postgresql after installing postgresql"
            log "postgres: starting cluster $ver/main"
            # Exit code 2 means "already running" (e.g. still starting up).
            "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 9>&- || [[ $? -eq 2 ]] \
                || die "postgres: pg_ctlcluster $ver main start failed (see /var/log/postgresql/)"
        fi
        wait_for "$WAIT_SECS" postgres pg_ready \
            || die "postgres: $PG_HOST:$PG_PORT does not accept connections (pg_isready)"
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client

    if ! psql_ok "$admin"; then
        # Server is up but will not let us in: fix auth if it is ours.
        if [[ $local_server -eq 1 ]] && pg_trust_loopback && psql_ok "$admin"; then
            :
        else
            local why
            why="$(timeout 10 psql "$admin" -X -q -tA -c 'select 1' 2>&1 | head -n 3 || true)"
            die "postgres: server is up but cannot connect as in $admin: $why"
        fi
    fi

    if ! psql_ok "$POSTGRES_URL"; then
        local exists
        exists="$(printf "select 1 from pg_database where datname = :'db';\n" \
            | timeout 10 psql "$admin" -X -q -tA -v db="$db" 2>/dev/null || true)"
        if [[ "$exists" != 1 ]]; then
            log "postgres: creating database \"$db\""
            # A concurrent run may have created it in the meantime.
            printf 'create database :"db";\n' \
                | timeout 10 psql "$admin" -X -q -v ON_ERROR_STOP=1 -v db="$db" >&2 \
                || psql_ok "$POSTGRES_URL" \
                || die "postgres: could not create database \"$db\""
        fi
        psql_ok "$POSTGRES_URL" || die "postgres: cannot run 'select 1' on $POSTGRES_URL"
    fi
    log "postgres: reachable at $POSTGRES_URL"
}

# === etcd ===

etcd_ok() {
    if command -v etcdctl >/dev/null 2>&1; then
        ETCDCTL_API=3 timeout 10 etcdctl --endpoints "$ETCD_ENDPOINTS" \
            --dial-timeout=2s --command-timeout=3s endpoint health >/dev/null 2>&1
    else
        local ep
        IFS=',' read -ra eps <<<"$ETCD_ENDPOINTS"
        for ep in "${eps[@]}"; do
            timeout 5 curl -fsS --max-time 3 "${ep%/}/health" 2>/dev/null | grep -q '"health": *"true"' \
                || return 1
        done
    fi
}

# The pid of the etcd this script started, if it is still alive.
our_etcd_pid() {
    local pid
    [[ -f "$ETCD_PID_FILE" ]] || return 1
    pid="$(cat "$ETCD_PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "--data-dir $ETCD_DATA_DIR " || return 1
    echo "$pid"
}

ensure_etcd() {
    if etcd_ok; then
        log "etcd: reachable at $ETCD_ENDPOINTS"
        return 0
    fi
    local first="${ETCD_ENDPOINTS%%,*}"
    [[ "$ETCD_ENDPOINTS" == "$first" ]] \
        || die "etcd: $ETCD_ENDPOINTS is not healthy; this script only starts a single local member (set one endpoint)"
    parse_url "$first" 2379
    is_loopback "$URL_HOST" \
        || die "etcd: $first is not healthy and is not on loopback, so this script cannot start it"
    [[ "$URL_PORT" != 2380 ]] || die "etcd: client port 2380 clashes with the peer URL $ETCD_PEER_URL"

    if ! command -v etcdctl >/dev/null 2>&1 && ! command -v curl >/dev/null 2>&1; then
        apt_install etcd-client
    fi
    if ! command -v etcd >/dev/null 2>&1; then
        apt_install etcd-server
        # The package may have started its own etcd on the default port.
        if etcd_ok; then
            log "etcd: reachable at $ETCD_ENDPOINTS (started by the package)"
            return 0
        fi
    fi

    local pid i
    if pid="$(our_etcd_pid)"; then
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "--listen-client-urls $first " \
            || die "etcd: the etcd this script started earlier (pid $pid) serves another URL than $first; run 'scripts/services.sh stop' first"
        log "etcd: pid $pid (started earlier) is running; waiting for it"
    else
        mkdir -p "$ETCD_DATA_DIR"
        chmod 700 "$ETCD_DATA_DIR"
        log "etcd: starting on $first (data $ETCD_DATA_DIR, log $ETCD_LOG)"
        rm -f "$ETCD_PID_FILE"
        # setsid + nohup: survives the shell (and CI step) that started it.
        # The inner shell records its own pid, then becomes etcd.
        # shellcheck disable=SC2016
        setsid bash -c 'echo $$ >"$0"; exec nohup etcd "$@"' "$ETCD_PID_FILE" \
            --name rampart-test \
            --data-dir "$ETCD_DATA_DIR" \
            --listen-client-urls "$first" \
            --advertise-client-urls "$first" \
            --listen-peer-urls "$ETCD_PEER_URL" \
            --initial-advertise-peer-urls "$ETCD_PEER_URL" \
            --initial-cluster "rampart-test=$ETCD_PEER_URL" \
            --initial-cluster-state new \
            --logger zap --log-outputs stderr \
            </dev/null >>"$ETCD_LOG" 2>&1 9>&- &
        for ((i = 0; i < 20; i++)); do
            [[ -s "$ETCD_PID_FILE" ]] && break
            sleep 0.1
        done
        pid="$(cat "$ETCD_PID_FILE" 2>/dev/null || true)"
        [[ -n "$pid" ]] || die "etcd: could not be launched (see $ETCD_LOG)"
    fi
    for ((i = 0; i < WAIT_SECS * 2; i++)); do
        etcd_ok && break
        if ! kill -0 "$pid" 2>/dev/null; then
            log "etcd: last lines of $ETCD_LOG:"
            tail -n 15 "$ETCD_LOG" >&2 || true
            die "etcd: exited during start-up (see $ETCD_LOG)"
        fi
        sleep 0.5
    done
    etcd_ok || die "etcd: $first not healthy after ${WAIT_SECS}s (see $ETCD_LOG)"
    log "etcd: started (pid $pid), reachable at $ETCD_ENDPOINTS"
}

stop_etcd() {
    local pid i
    if ! pid="$(our_etcd_pid)"; then
        log "etcd: no etcd started by this script is running"
        rm -f "$ETCD_PID_FILE"
        return 0
    fi
    log "etcd: stopping pid $pid"
    kill "$pid"
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && die "etcd: pid $pid did not stop"
    rm -f "$ETCD_PID_FILE"
}

# === main ===

mkdir -p "$STATE_DIR"
# Several engineers (and CI) may run this at once: one at a time. Daemons
# started below get `9>&-` so they do not inherit (and hold) the lock.
exec 9>"$STATE_DIR/services.lock"
if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "another scripts/services.sh held $STATE_DIR/services.lock for 300s"
fi

case "${1:-start}" in
    start) ;;
    stop)
        stop_etcd
        exit 0
        ;;
    *) die "unknown command '$1' (use: start | stop)" ;;
esac

# etcd-client (the Rust crate) generates its gRPC code with protoc, which
# needs the well-known types (google/protobuf/*.proto) from libprotobuf-dev.
build_pkgs=()
command -v protoc >/dev/null 2>&1 || build_pkgs+=(protobuf-compiler)
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || build_pkgs+=(libprotobuf-dev)
[[ ${#build_pkgs[@]} -eq 0 ]] || apt_install "${build_pkgs[@]}"

ensure_redis
ensure_postgres
ensure_etcd

printf 'export RAMPART_REDIS_URL=%q\n' "$REDIS_URL"
printf 'export RAMPART_POSTGRES_URL=%q\n' "$POSTGRES_URL"
printf 'export RAMPART_ETCD_ENDPOINTS=%q\n' "$ETCD_ENDPOINTS"
