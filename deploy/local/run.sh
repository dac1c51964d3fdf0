#!/usr/bin/env bash
# The docker-compose topology of deploy/ from local processes, for tests and for machines
# without Docker: a private PostgreSQL (the system of record) and a private redis-server, N Keel
# `server` processes sharing one JWT key and one cookie key, and nginx (Debian's package, run as
# the current user) in front with a configuration derived from deploy/nginx/nginx.conf (same
# routing rules).
#
# Usage:
#   deploy/local/run.sh [--instances N] [--dir DIR] [--no-postgres]
#                                  start, print the addresses, run until SIGTERM / SIGINT
#                                  (Ctrl-C), then stop all; --no-postgres: accounts in Redis
#   deploy/local/run.sh stop DIR   stop the topology that runs in DIR
#
# Output on stdout, one line each, the `front` line last:
#   dir /tmp/keel-local.XXXXXX
#   postgres postgres://postgres@127.0.0.1:PORT/keel     (unless --no-postgres)
#   redis redis://127.0.0.1:PORT
#   instance 1 http://127.0.0.1:PORT
#   ...
#   front http://127.0.0.1:PORT
# Everything it starts is listed in DIR/pids (`name pid`), its own pid in DIR/run.pid, logs in
# DIR/*.log. On SIGTERM, SIGINT, `stop DIR` or a failed start it stops every process it started
# (servers get SIGTERM and their drain + shutdown time, then SIGKILL) and waits for them. If it
# is killed with SIGKILL itself, `run.sh stop DIR` still stops what DIR/pids lists. (A job started
# with `&` from a non-interactive shell ignores SIGINT, a shell rule: stop it with SIGTERM.)
#
# Environment:
# (These two do not start with KEEL_: the server would read them as configuration keys.)
#   LOCAL_KEEL_SERVER  the server binary (default: $CARGO_TARGET_DIR/debug/server, else
#                      target/debug/server in the repository; build it with `cargo build -p server`)
#   LOCAL_KEEL_INSTANCES  number of Keel instances (default 2; --instances wins)
#   NGINX_BIN / REDIS_SERVER_BIN   default: nginx / redis-server on PATH (or /usr/sbin/nginx)
#   PG_BINDIR          PostgreSQL's binaries (default: `pg_config --bindir`, else the newest
#                      /usr/lib/postgresql/*/bin); initdb and postgres run as `nobody` when
#                      run.sh runs as root (they refuse root)
#   LOCAL_KEEL_KEEP=1  keep DIR after a clean stop (it is removed when run.sh made it itself;
#                      it is always kept after a failure, and when given with --dir)
#   KEEL_*             passed to every instance (an unknown key stops it). Defaults here:
#                      KEEL_PROFILE=production, KEEL_HTTP__TRUSTED_PROXIES=["127.0.0.1/32"] (nginx), KEEL_SERVER__WORKERS=1;
#                      set KEEL_PROFILE=development to try cookies over plain http in a browser
#                      (production cookies are Secure). The keys, KEEL_REDIS__URL and
#                      KEEL_DATABASE__URL are generated, KEEL_LOG__FORMAT is json (the script
#                      reads the listen address).
# Requires bash, redis-server, PostgreSQL's server binaries (Debian: postgresql; not with
# --no-postgres), nginx, openssl (or /dev/urandom + base64) and a built server.

set -euo pipefail
trap '' PIPE # a reader that went away must not kill us before we clean up

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
nginx_template="$repo/deploy/nginx/nginx.conf"

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# ---- stop DIR ---------------------------------------------------------------------------------

# Whether pid $1 runs. A zombie (exited, not yet reaped by its parent, such as a runner started
# by a test that waits for it only after `stop`) counts as gone.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [[ "$state" != Z ]]
}

# The program behind a name in DIR/pids.
program() {
  case "$1" in
    keel-*) echo server ;;
    redis) echo redis ;;
    postgres) echo postgres ;;
    *) echo "$1" ;;
  esac
}

# Whether pid $1 still runs the program named $2 (guards against pid reuse).
runs() {
  local cmdline
  alive "$1" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)"
  [[ -z "$cmdline" || "$cmdline" == *"$2"* ]]
}

stop_dir() {
  local dir="$1" runner="" listed name pid i entry child
  [[ -d "$dir" ]] || die "stop: no such directory: $dir"
  # Read the list first: a runner that stops cleanly removes a directory it made.
  listed="$(cat "$dir/pids" 2>/dev/null || true)"
  runner="$(cat "$dir/run.pid" 2>/dev/null || true)"
  if [[ -n "$runner" ]] && runs "$runner" run.sh; then
    kill -TERM "$runner" 2>/dev/null || true
    for ((i = 0; i < 1200; i++)); do alive "$runner" || break; sleep 0.1; done
  fi
  # Whatever is still listed (the runner was SIGKILLed, or did not finish): SIGTERM, a short
  # wait, then SIGKILL (nginx's workers first, so none is orphaned).
  local -a left=()
  while read -r name pid; do
    [[ -n "$pid" ]] || continue
    if runs "$pid" "$(program "$name")"; then
      log "stop: $name ($pid) still runs: SIGTERM"
      kill -TERM "$pid" 2>/dev/null || true
      left+=("$name:$pid")
    fi
  done <<<"$listed"
  for entry in "${left[@]}"; do
    name="${entry%%:*}" pid="${entry##*:}"
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    if runs "$pid" "$(program "$name")"; then
      log "stop: $name ($pid) still runs: SIGKILL"
      for child in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
        kill -KILL "$child" 2>/dev/null || true
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

if [[ "${1:-}" == "stop" ]]; then
  [[ $# -eq 2 ]] || die "usage: run.sh stop DIR"
  stop_dir "$2"
  exit 0
fi

# ---- start ------------------------------------------------------------------------------------

instances="${LOCAL_KEEL_INSTANCES:-2}"
dir=""
with_postgres=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --instances) instances="${2:?--instances needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --no-postgres) with_postgres=0; shift ;;
    -h | --help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$instances" =~ ^[1-9][0-9]?$ ]] || die "--instances must be a number from 1 to 99"

server_bin="${LOCAL_KEEL_SERVER:-${CARGO_TARGET_DIR:-$repo/target}/debug/server}"
[[ -x "$server_bin" ]] || die "no server binary at $server_bin: run \`cargo build -p server\` or set LOCAL_KEEL_SERVER"
redis_bin="${REDIS_SERVER_BIN:-$(command -v redis-server || true)}"
[[ -n "$redis_bin" ]] || die "redis-server not found: apt-get install redis-server (or set REDIS_SERVER_BIN)"
nginx_bin="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
[[ -x "$nginx_bin" ]] || die "nginx not found: apt-get install nginx (or set NGINX_BIN)"
pg_bindir="${PG_BINDIR:-}"
if [[ $with_postgres -eq 1 && -z "$pg_bindir" ]]; then
  pg_bindir="$(pg_config --bindir 2>/dev/null || true)"
  if [[ ! -x "$pg_bindir/initdb" ]]; then
    pg_bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  fi
fi
[[ $with_postgres -eq 0 || -x "$pg_bindir/initdb" ]] ||
  die "PostgreSQL's binaries not found: apt-get install postgresql (or set PG_BINDIR, or --no-postgres)"
[[ -f "$nginx_template" ]] || die "missing $nginx_template"

made_dir=0
if [[ -z "$dir" ]]; then
  dir="$(mktemp -d "${TMPDIR:-/tmp}/keel-local.XXXXXX")"
  made_dir=1
else
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
fi
: >"$dir/pids"
echo $$ >"$dir/run.pid"

declare -a pids=() names=()
stopping=0

record() { # name pid
  names+=("$1")
  pids+=("$2")
  echo "$1 $2" >>"$dir/pids"
}

# Waits up to $2 tenths of a second for pid $1 to end; true when it did.
wait_gone() {
  local i
  for ((i = 0; i < $2; i++)); do
    alive "$1" || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  return 1
}

cleanup() {
  [[ $stopping -eq 1 ]] && return
  stopping=1
  trap '' TERM INT HUP
  local i pid grace=$((${KEEL_SHUTDOWN__DRAIN_SECONDS:-5} + ${KEEL_SHUTDOWN__TIMEOUT_SECONDS:-30} + 5))
  # nginx first (no new traffic), then every instance at once (each drains and closes its
  # sockets with 1001), the stores last (PostgreSQL with its fast shutdown, SIGINT).
  store() { [[ "$1" == redis || "$1" == postgres ]]; }
  for i in "${!pids[@]}"; do
    store "${names[$i]}" || kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    store "${names[$i]}" && continue
    if ! wait_gone "$pid" $((grace * 10)); then
      log "${names[$i]} ($pid) did not stop within ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 50 || true
    fi
  done
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    store "${names[$i]}" || continue
    if [[ "${names[$i]}" == postgres ]]; then
      kill -INT "$pid" 2>/dev/null || true
    else
      kill -TERM "$pid" 2>/dev/null || true
    fi
    wait_gone "$pid" 100 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 50 || true; }
  done
  log "stopped"
}
finish() { # exit status
  cleanup
  if [[ $1 -eq 0 && $made_dir -eq 1 && "${LOCAL_KEEL_KEEP:-0}" != 1 ]]; then
    rm -rf "$dir"
  elif [[ $1 -ne 0 ]]; then
    log "logs kept in $dir"
  fi
  exit "$1"
}
trap 'finish 0' TERM INT HUP
trap 'finish $?' EXIT

# A port that nothing listens on now (the start below retries when it was taken meanwhile).
free_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

# The HTTP status of GET http://127.0.0.1:$1$2 (000 when nothing answers).
http_status() {
  local line
  line="$(
    {
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
      printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
      timeout 2 head -n1 <&3 || true
    } 2>/dev/null
  )" || true
  line="${line#HTTP/1.? }"
  echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

random_b64() { # bytes
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -base64 "$1" | tr -d '\n'
  else
    head -c "$1" /dev/urandom | base64 | tr -d '\n'
  fi
}

# ---- postgres ---------------------------------------------------------------------------------
# initdb and postgres refuse to run as root: then they run as nobody, in a folder given to it.
database_url=""
if [[ $with_postgres -eq 1 ]]; then
  pg_dir="$dir/postgres"
  mkdir -p "$pg_dir"
  as_owner=()
  if [[ "$(id -u)" == 0 ]]; then
    chown nobody:nogroup "$pg_dir"
    # nobody must be able to reach its folder (mktemp made DIR for root alone): traverse only.
    chmod o+x "$dir"
    as_owner=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  fi
  "${as_owner[@]}" "$pg_bindir/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    "${as_owner[@]}" "$pg_bindir/postgres" -D "$pg_dir/data" -c "port=$port" \
      -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$pg_dir" \
      </dev/null >>"$dir/postgres.log" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      "$pg_bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
      sleep 0.1
    done
    if alive "$pid" && "$pg_bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      record postgres "$pid"
      "$pg_bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres keel ||
        die "createdb failed; see $dir/postgres.log"
      database_url="postgres://postgres@127.0.0.1:$port/keel"
      break
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ -n "$database_url" ]] || die "PostgreSQL did not start; see $dir/postgres.log"
fi

# ---- redis ------------------------------------------------------------------------------------
mkdir -p "$dir/redis"
redis_port=""
for attempt in 1 2 3 4 5; do
  port="$(free_port)"
  "$redis_bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/redis" \
    --daemonize no --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
  pid=$!
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    grep -q 'Ready to accept connections' "$dir/redis.log" 2>/dev/null && break
    sleep 0.1
  done
  if alive "$pid" && grep -q 'Ready to accept connections' "$dir/redis.log"; then
    record redis "$pid"
    redis_port="$port"
    break
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
[[ -n "$redis_port" ]] || die "redis-server did not start; see $dir/redis.log"
redis_url="redis://127.0.0.1:$redis_port"
echo "dir $dir"
[[ -z "$database_url" ]] || echo "postgres $database_url"
echo "redis $redis_url"

# ---- Keel instances ---------------------------------------------------------------------------
# One HS256 secret and one cookie key for all instances: a token or cookie issued by one
# instance is valid on every other.
export KEEL_PROFILE="${KEEL_PROFILE:-production}"
export KEEL_HTTP__TRUSTED_PROXIES="${KEEL_HTTP__TRUSTED_PROXIES:-[\"127.0.0.1/32\"]}"
export KEEL_SERVER__WORKERS="${KEEL_SERVER__WORKERS:-1}"
export KEEL_AUTH__JWT__ALGORITHM=HS256
export KEEL_AUTH__JWT__KEYS="[{kid=\"local-$(date +%s)\",secret=\"$(random_b64 48)\"}]"
export KEEL_COOKIE__KEY="$(random_b64 64)"
export KEEL_REDIS__URL="$redis_url"
# Links in mails point at nginx; mail goes to an SMTP server on the usual development port
# (Mailpit, MailHog or `python3 -m aiosmtpd -n -l 127.0.0.1:1025`). While nothing listens there,
# mail waits in the outbox and is retried; no request fails for it.
export KEEL_APP_URL="${KEEL_APP_URL:-https://localhost}"
export KEEL_MAIL__SMTP_URL="${KEEL_MAIL__SMTP_URL:-smtp://127.0.0.1:1025}"
if [[ -n "$database_url" ]]; then
  export KEEL_DATABASE__URL="$database_url"
else
  unset KEEL_DATABASE__URL
fi
export KEEL_SERVER__HOST=127.0.0.1
export KEEL_SERVER__PORT=0
export KEEL_LOG__FORMAT=json
unset KEEL_CONFIG

declare -a ports=()
for ((n = 1; n <= instances; n++)); do
  "$server_bin" </dev/null >"$dir/keel-$n.log" 2>&1 &
  record "keel-$n" $!
done
for ((n = 1; n <= instances; n++)); do
  pid="${pids[$n]}"
  port=""
  for ((i = 0; i < 300; i++)); do
    port="$(grep -m1 '"listening"' "$dir/keel-$n.log" 2>/dev/null |
      sed -n 's/.*"address":"[^"]*:\([0-9]*\)".*/\1/p' || true)"
    [[ -n "$port" ]] && break
    alive "$pid" || break
    sleep 0.1
  done
  [[ -n "$port" ]] || { tail -n 20 "$dir/keel-$n.log" >&2 || true; die "keel-$n did not start; see $dir/keel-$n.log"; }
  ports+=("$port")
done
for ((n = 1; n <= instances; n++)); do
  port="${ports[$((n - 1))]}"
  for ((i = 0; i < 200; i++)); do
    [[ "$(http_status "$port" /health/ready)" == 200 ]] && break
    sleep 0.1
  done
  [[ "$(http_status "$port" /health/ready)" == 200 ]] || die "keel-$n is not ready; see $dir/keel-$n.log"
  echo "instance $n http://127.0.0.1:$port"
done

# ---- nginx ------------------------------------------------------------------------------------
# deploy/nginx/nginx.conf with the lines marked `@local` pointed into $dir and the upstream
# servers replaced by the local instances; every routing rule stays as written there.
ngx="$dir/nginx"
mkdir -p "$ngx"
upstreams=""
for port in "${ports[@]}"; do
  upstreams+="        server 127.0.0.1:$port max_fails=2 fail_timeout=5s;"$'\n'
done
front_port=""
for attempt in 1 2 3 4 5; do
  port="$(free_port)"
  UPSTREAMS="$upstreams" awk -v ngx="$ngx" -v port="$port" -v root="$(id -u)" '
    NR == 1 && root == 0 { print "user root;  # local only: the workers read files in a private dir" }
    /^[ \t]*# @upstream-begin/ { print; printf "%s", ENVIRON["UPSTREAMS"]; skip = 1; next }
    /^[ \t]*# @upstream-end/ { skip = 0 }
    skip { next }
    $1 !~ /^#/ && /# @local$/ {
      if ($1 == "pid")        { print "pid " ngx "/nginx.pid;"; next }
      if ($1 == "error_log")  { print "error_log " ngx "/error.log warn;"; next }
      if ($1 == "access_log") { print "    access_log " ngx "/access.log keel;"; next }
      if ($1 == "listen")     { print "        listen 127.0.0.1:" port ";"; next }
      if ($1 ~ /_temp_path$/) { print "    " $1 " " ngx "/" $1 ";"; next }
      print "run.sh: unknown @local line: " $0 > "/dev/stderr"; exit 1
    }
    { print }
  ' "$nginx_template" >"$ngx/nginx.conf"
  "$nginx_bin" -t -q -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" 2>>"$ngx/error.log" ||
    die "the generated nginx configuration is invalid; see $ngx/nginx.conf and $ngx/error.log"
  "$nginx_bin" -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" -g 'daemon off;' </dev/null >>"$ngx/error.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    [[ "$(http_status "$port" /health/live)" == 200 ]] && break
    sleep 0.1
  done
  if alive "$pid" && [[ "$(http_status "$port" /health/live)" == 200 ]]; then
    record nginx "$pid"
    front_port="$port"
    break
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
[[ -n "$front_port" ]] || die "nginx did not start; see $ngx/error.log"
echo "front http://127.0.0.1:$front_port"

# ---- run until told to stop -------------------------------------------------------------------
declare -A reported=()
while :; do
  sleep 1 &
  wait $! || true
  for i in "${!pids[@]}"; do
    if ! alive "${pids[$i]}" && [[ -z "${reported[$i]:-}" ]]; then
      reported[$i]=1
      log "${names[$i]} (${pids[$i]}) exited; see $dir"
    fi
  done
done
