#!/usr/bin/env bash
# Start (or check) the services arfwire's tests and local runs need:
#   PostgreSQL on 127.0.0.1:5432 and a Kafka-compatible broker (tansu 0.6.0) on 127.0.0.1:9092.
#
#   scripts/services.sh up     start both (installing what is missing), wait until ready
#   scripts/services.sh down   stop the broker this script started
#
# Environment written to .services.env (source it): DATABASE_URL, KAFKA_BOOTSTRAP.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
state_dir="${ARFWIRE_STATE_DIR:-${TMPDIR:-/tmp}/arfwire-services}"
mkdir -p "$state_dir"
pg_port="${ARFWIRE_PG_PORT:-5432}"
kafka_port="${ARFWIRE_KAFKA_PORT:-9092}"
tansu_version="0.6.0"

log() { printf 'services: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

wait_port() { # host port seconds
    local deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then return 1; fi
        sleep 0.5
    done
}

postgres_up() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "installing PostgreSQL from Debian packages"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    if ! pg_isready -h 127.0.0.1 -p "$pg_port" -q 2>/dev/null; then
        local version
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        log "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    local deadline=$((SECONDS + 60))
    until pg_isready -h 127.0.0.1 -p "$pg_port" -q; do
        if [ $SECONDS -ge $deadline ]; then log "PostgreSQL did not become ready"; return 1; fi
        sleep 0.5
    done
    # Local trust authentication is assumed for tests; a password is set for TCP clients that
    # insist on one.
    as_root su postgres -c "psql -qAt -p $pg_port -c \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
    log "PostgreSQL ready on 127.0.0.1:$pg_port"
}

dovecot_present() {
    # The IMAP poller's tests start private Dovecot instances of their own; only the binaries
    # are needed, never the system service.
    if ! command -v dovecot >/dev/null 2>&1 || ! command -v doveadm >/dev/null 2>&1; then
        log "installing Dovecot (IMAP server for the mailbox intake tests)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
    fi
    log "Dovecot available: $(dovecot --version 2>/dev/null | head -1)"
}

tools_present() {
    # swaks drives the LMTP front door in an interoperability test; Chromium and chromedriver
    # drive the abuse desk's pages in the browser test.
    local missing=()
    command -v swaks >/dev/null 2>&1 || missing+=(swaks)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium chromium-driver)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

tansu_up() {
    if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
        log "installing tansu $tansu_version (a Kafka-compatible broker; takes about 10 minutes once)"
        cargo install tansu --version "$tansu_version" --locked --features dynostore --quiet
    fi
    local tansu_bin
    tansu_bin="$(command -v tansu || echo "$HOME/.cargo/bin/tansu")"
    if (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null; then
        log "a broker already listens on 127.0.0.1:$kafka_port"
        return 0
    fi
    log "starting tansu on 127.0.0.1:$kafka_port (in-memory storage)"
    (
        cd "$state_dir"
        exec "$tansu_bin" broker --storage-engine memory://tansu/ \
            --listener-url "tcp://127.0.0.1:$kafka_port" \
            --advertised-listener-url "tcp://127.0.0.1:$kafka_port" >"$state_dir/tansu.log" 2>&1
    ) &
    echo $! >"$state_dir/tansu.pid"
    if ! wait_port 127.0.0.1 "$kafka_port" 60; then
        log "tansu did not start; its log follows"
        cat "$state_dir/tansu.log" >&2 || true
        return 1
    fi
    log "tansu ready on 127.0.0.1:$kafka_port"
}

tansu_down() {
    if [ -f "$state_dir/tansu.pid" ]; then
        kill "$(cat "$state_dir/tansu.pid")" 2>/dev/null || true
        rm -f "$state_dir/tansu.pid"
        log "tansu stopped"
    fi
}

case "${1:-up}" in
    up)
        postgres_up
        dovecot_present
        tools_present
        tansu_up
        cat >"$here/.services.env" <<ENV
export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:$pg_port/postgres
export KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port
ENV
        ;;
    down) tansu_down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
