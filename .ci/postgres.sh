#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the storage tests and print its SQLAlchemy URL.
#
#   export AMLBOT_TEST_POSTGRES_URL="$(.ci/postgres.sh)"   # start (or reuse) and print the URL
#   source .ci/postgres.sh                                  # same, and exports the variable
#   .ci/postgres.sh stop                                    # stop it and remove its directory
#
# Installs Debian's postgresql with apt-get when no server binaries are found. The cluster lives
# in $AMLBOT_PG_DIR (default /tmp/amlbot-postgres), owned by the postgres user, and listens on
# 127.0.0.1 only, on the first free port from $AMLBOT_PG_PORT (default 54329). Running it again
# reuses the running server. Logs go to stderr; stdout carries only the URL.

_amlbot_pg_main() (
    set -euo pipefail
    local dir="${AMLBOT_PG_DIR:-/tmp/amlbot-postgres}"
    local db="${AMLBOT_PG_DB:-amlbot_test}"
    local data="$dir/data"
    local say=(echo "postgres.sh:")

    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
        "${say[@]}" "installing postgresql with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends postgresql >&2
        bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    fi

    # The server refuses to run as root: run its tools as the postgres user when we are root.
    local owner as_owner=()
    if [[ "$(id -u)" == 0 ]]; then
        owner=postgres
        id -u "$owner" >/dev/null 2>&1 || useradd --system --home-dir "$dir" "$owner"
        as_owner=(runuser -u "$owner" --)
    else
        owner="$(id -un)"
    fi

    if [[ "${1:-start}" == stop ]]; then
        if [[ -f "$data/postmaster.pid" ]]; then
            "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
        fi
        rm -rf "$dir"
        "${say[@]}" "stopped; removed $dir" >&2
        return 0
    fi

    mkdir -p "$dir"
    chown "$owner" "$dir"
    chmod 700 "$dir"

    if [[ ! -f "$data/PG_VERSION" ]]; then
        "${say[@]}" "initdb in $data" >&2
        "${as_owner[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >&2 \
            || "${as_owner[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust \
                --encoding=UTF8 --locale=C >&2
    fi

    local port
    if "${as_owner[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && [[ -f "$dir/port" ]]; then
        port="$(cat "$dir/port")"
        "${say[@]}" "reusing the server on 127.0.0.1:$port" >&2
    else
        port="${AMLBOT_PG_PORT:-54329}"
        # A port is free when nothing accepts a connection on it.
        while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            port=$((port + 1))
        done
        echo "$port" >"$dir/port"
        "${say[@]}" "starting the server on 127.0.0.1:$port" >&2
        "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on" start >&2
    fi

    local psql=("${as_owner[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtAX)
    if [[ -z "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE \"$db\"" >&2
    fi
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/$db"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export the URL into the caller's shell.
    if AMLBOT_TEST_POSTGRES_URL="$(_amlbot_pg_main "$@")"; then
        export AMLBOT_TEST_POSTGRES_URL
        echo "AMLBOT_TEST_POSTGRES_URL=$AMLBOT_TEST_POSTGRES_URL" >&2
    fi
    unset -f _amlbot_pg_main
else
    _amlbot_pg_main "$@"
fi
