#!/usr/bin/env bash
# Install (Debian packages) and start PostgreSQL, RabbitMQ and Redis on
# loopback without systemd, for CI and for developers who want the real
# servers. Idempotent: a server already answering is left alone.
# Prints the environment to export (DATABASE_URL, TEST_AMQP_URL, REDIS_URL).
set -euo pipefail

STATE=${SERVICES_DIR:-/tmp/om-services}
PG_PORT=${PG_PORT:-5432}
mkdir -p "$STATE"

need_install=()
command -v redis-server >/dev/null || need_install+=(redis-server)
command -v rabbitmq-server >/dev/null || need_install+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_install+=(postgresql)
if [ ${#need_install[@]} -gt 0 ]; then
  echo "services: installing ${need_install[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}" >&2
fi

wait_for() {  # wait_for NAME SECONDS CMD...
  local name=$1 deadline=$(( $(date +%s) + $2 )); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "services: $name did not come up" >&2; return 1; fi
    sleep 0.5
  done
}

# --- PostgreSQL (a private cluster owned by the postgres user) ---
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
PGDATA="$STATE/pgdata"
if ! "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then
  mkdir -p "$PGDATA" && chown -R postgres:postgres "$STATE"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    su postgres -c "$PG_BIN/initdb -D $PGDATA -U postgres --auth=trust -E UTF8" >&2
    # Tests create and drop databases freely; durability of a throwaway cluster is not the point.
    printf "fsync=off\nsynchronous_commit=off\nfull_page_writes=off\nmax_connections=300\n" >> "$PGDATA/postgresql.conf"
  fi
  su postgres -c "$PG_BIN/pg_ctl -D $PGDATA -l $STATE/postgres.log -o '-p $PG_PORT -k /tmp -h 127.0.0.1' -w start" >&2
fi
wait_for postgres 30 "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
# The database DATABASE_URL names (tests use test_<name>; benchmarks and manage.py use it directly).
"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='ordermanager'" \
  | grep -q 1 || "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres ordermanager

# --- Redis ---
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --logfile "$STATE/redis.log" >&2
fi
wait_for redis 20 redis-cli -h 127.0.0.1 -p 6379 ping

# --- RabbitMQ ---
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  rabbitmq-plugins enable --offline rabbitmq_consistent_hash_exchange >/dev/null 2>&1 || true
  # The server script drops to the rabbitmq user: keep its logs where that user may write.
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 HOME=/var/lib/rabbitmq \
    nohup rabbitmq-server > "$STATE/rabbitmq.out" 2>&1 &
fi
wait_for rabbitmq 180 rabbitmqctl -q await_startup --timeout 5
wait_for rabbitmq-port 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 

echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/ordermanager"
echo "TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672//"
echo "REDIS_URL=redis://127.0.0.1:6379/0"
