#!/usr/bin/env bash
# Keel's benchmark harness (issue #6). `just bench` calls this script; it needs nothing but bash,
# a Rust toolchain and Debian packages it installs itself when missing (wrk, gnuplot-nox,
# redis-server, redis-tools).
#
#   bash bench/run.sh [--quick] [--only http|realtime] [--out DIR] [options]
#
# It builds release binaries, starts Keel (in memory, and on a private redis-server) and the
# references (a bare actix-web hello-world, redis-benchmark GET), runs every scenario after a
# warm-up R times, and writes the raw outputs and results.json to the run directory (default
# target/bench/<UTC timestamp>/). Then bench/report.py renders docs/benchmarks.md and the plot
# docs/benchmarks-me-latency.png from results.json.
#
# Options:
#   --quick              smoke run: 3 s per run, 1 repetition, 1 s warm-up, a short sweep
#   --only http|realtime one family of scenarios (default: both)
#   --out DIR            run directory (default target/bench/<timestamp>)
#   --duration S         seconds per measured run (default 10; --quick 3)
#   --reps R             repetitions per scenario (default 3; --quick 1)
#   --warmup S           warm-up seconds before each scenario (default 3; --quick 1)
#   --connections C      wrk connections / redis-benchmark clients (default 64)
#   --server-cpus LIST   cores for the servers (default 0, when nproc >= 2)
#   --load-cpus LIST     cores for wrk, loadgen, redis-benchmark's server (default 1)
#   --no-install         do not apt-get missing tools
#   --no-build           use the release binaries already built
#   --no-docs            do not regenerate docs/benchmarks.md and the plot
#   --keep-logs          keep the servers' logs whole (default: head and tail of big ones)
#
# Every process it starts is stopped on exit. The system Redis (6379) is never touched.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
COMMAND="bash bench/run.sh${*:+ $*}"

QUICK=0
ONLY=all
OUT=""
DURATION=""
REPS=""
WARMUP=""
CONNS=64
SERVER_CPUS=""
LOAD_CPUS=""
INSTALL=1
BUILD=1
DOCS=1
KEEP_LOGS=0
LOADGEN_BUILD_FAILED=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY="${2:?--only needs http or realtime}"; shift ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --duration) DURATION="${2:?}"; shift ;;
    --reps) REPS="${2:?}"; shift ;;
    --warmup) WARMUP="${2:?}"; shift ;;
    --connections) CONNS="${2:?}"; shift ;;
    --server-cpus) SERVER_CPUS="${2:?}"; shift ;;
    --load-cpus) LOAD_CPUS="${2:?}"; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --no-docs) DOCS=0 ;;
    --keep-logs) KEEP_LOGS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$ONLY" in all | http | realtime) ;; *) echo "run.sh: --only takes http or realtime" >&2; exit 2 ;; esac

if [ "$QUICK" = 1 ]; then
  DURATION="${DURATION:-3}"; REPS="${REPS:-1}"; WARMUP="${WARMUP:-1}"
  SWEEP=(1 4 16 64 256); SWEEP_SECS=2
else
  DURATION="${DURATION:-10}"; REPS="${REPS:-3}"; WARMUP="${WARMUP:-3}"
  SWEEP=(1 2 4 8 16 32 64 128 256); SWEEP_SECS="$DURATION"
fi
# A burst is kept below Keel's per-socket outbound queue (realtime.outbound_queue, 256 frames):
# a one-worker server reads a longer burst from the sender and enqueues it to every receiver
# before any writer runs, so every queue overflows and every receiver is disconnected as a slow
# reader (by design: memory stays bounded). 200 messages to 1,000 sockets = 200,000 deliveries.
FANOUT_BURST_MESSAGES=200
ME_SESSIONS=16        # sessions whose tokens /me cycles through
LOGIN_CONNS=16        # login is argon2-bound; see the note where it runs
FANOUT_SOCKETS=1000
FANOUT_RATE=50        # messages/s of the paced fan-out
ACK_SOCKETS=100

log() { printf '\033[1m[bench %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------------

install_tools() {
  local need_apt=()
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
  command -v gnuplot >/dev/null 2>&1 || need_apt+=(gnuplot-nox)
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
  command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  pg_bin >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
  if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$INSTALL" = 0 ]; then die "missing: ${need_apt[*]} (and --no-install)"; fi
    log "installing: ${need_apt[*]}"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
}

# PostgreSQL's binary folder (Debian keeps it off the PATH); pgbench ships with the server.
pg_bin() {
  local dir
  dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ] && [ -x "$dir/pgbench" ] && { echo "$dir"; return 0; }
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pgbench" ] && { echo "$dir"; return 0; }
  done
  return 1
}

# --- processes ---------------------------------------------------------------------------------

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
  local keep=() pid
  for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url pid what
  local i
  for i in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || die "$3 exited before $1 answered (see its log in $RUN/logs)"
    sleep 0.1
    [ "$i" -lt 300 ] || die "$3 did not answer $1 within 30 s"
  done
}

# Big logs are cut to their head and tail (the access log writes a line per request).
trim_log() {
  local file="$1" lines
  [ -f "$file" ] || return 0
  lines=$(wc -l <"$file")
  echo "$lines" >"$file.lines"
  if [ "$KEEP_LOGS" = 0 ] && [ "$(stat -c %s "$file")" -gt 20000000 ]; then
    { head -n 200 "$file"; echo "... $((lines - 400)) lines cut by bench/run.sh (--keep-logs keeps them) ..."; tail -n 200 "$file"; } >"$file.cut"
    mv "$file.cut" "$file"
  fi
}

# start_keel NAME [VAR=value...]: Keel on a free port, pinned to the server cores, logs in
# $RUN/logs/NAME.log, run from the run directory (so no keel.toml is picked up). Sets KEEL_PID
# and KEEL_URL; waits for /health/ready.
start_keel() {
  local name="$1" port
  shift
  port=$(free_port)
  (cd "$RUN" && exec env "${KEEL_ENV[@]}" "$@" KEEL_SERVER__HOST=127.0.0.1 KEEL_SERVER__PORT="$port" \
    "${PIN_SERVER[@]}" "$SERVER_BIN" >>"$RUN/logs/$name.log" 2>&1) &
  KEEL_PID=$!
  PIDS+=("$KEEL_PID")
  KEEL_URL="http://127.0.0.1:$port"
  wait_http "$KEEL_URL/health/ready" "$KEEL_PID" "keel ($name)"
  log "keel $name: pid $KEEL_PID on $KEEL_URL"
}

stop_pid() { # pid [log file to trim]
  local pid="$1" status
  if ! kill -0 "$pid" 2>/dev/null; then
    status=0
    wait "$pid" 2>/dev/null || status=$?
    # 143 is SIGTERM, 137 SIGKILL: something else on the machine ended it.
    log "pid $pid had already exited (status $status) before the harness stopped it"
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
  [ $# -lt 2 ] || trim_log "$2"
}

start_hello() {
  local port
  port=$(free_port)
  "${PIN_SERVER[@]}" "$HELLO_BIN" "$port" >>"$RUN/logs/hello.log" 2>&1 &
  HELLO_PID=$!
  PIDS+=("$HELLO_PID")
  HELLO_URL="http://127.0.0.1:$port"
  wait_http "$HELLO_URL/" "$HELLO_PID" "bench-hello"
  log "hello-world: pid $HELLO_PID on $HELLO_URL"
}

# A private redis-server: no persistence (a benchmark must not wait on the disk), on the load
# cores (see PLACEMENT).
start_redis() {
  local port
  port=$(free_port)
  "${PIN_LOAD[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$RUN" --logfile "$RUN/logs/redis-$port.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  REDIS_PORT="$port"
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || die "private redis-server did not start"
  log "redis-server: pid $REDIS_PID on port $port"
}

# A private PostgreSQL (never the system one): initdb into the run directory, as `nobody` when
# the harness runs as root (initdb refuses root), on the load cores like Redis. Durability as in
# production but for synchronous_commit=off (a commit does not wait for its WAL flush, which on
# a VM's disk would measure the disk): the writes of register, login and refresh stay cheap and
# honest, and the select-only reference is unaffected.
PG_AS=()
start_postgres() {
  local bin port data="$RUN/pg"
  bin=$(pg_bin) || die "PostgreSQL's binaries are missing (apt-get install postgresql)"
  port=$(free_port)
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$data"
    PG_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  fi
  "${PG_AS[@]}" "$bin/initdb" -D "$data/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$RUN/logs/initdb.log" 2>&1 || die "initdb failed (see $RUN/logs/initdb.log)"
  cat >>"$data/data/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
synchronous_commit = off
shared_buffers = 256MB
max_connections = 300
EOF
  "${PIN_LOAD[@]}" "${PG_AS[@]}" "$bin/postgres" -D "$data/data" >"$RUN/logs/postgres.log" 2>&1 &
  PG_PID=$!
  PIDS+=("$PG_PID")
  PG_PORT="$port"
  for _ in $(seq 100); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "private PostgreSQL did not start"
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres keel
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres pgbench
  "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -s 10 -q pgbench >"$RUN/logs/pgbench-init.log" 2>&1
  PG_URL_BASE="postgres://postgres@127.0.0.1:$port"
  log "postgres: pid $PG_PID on port $port"
}

# --- measuring ---------------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
core_ticks() { awk '/^cpu[0-9]+ /{b=$2+$3+$4+$7+$8+$9; printf "%s %d %d\n", $1, b, b+$5+$6}' /proc/stat; }
proc_ticks() { # pid -> utime+stime, 0 when gone
  if [ -r "/proc/$1/stat" ]; then sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; else echo 0; fi
}
proc_rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Measures around a command: per-core busy % and the CPU % of the watched processes
# (WATCH_PIDS). Prints a JSON object.
CPU_BEFORE=""
declare -A TICKS_BEFORE
cpu_start() {
  CPU_BEFORE=$(core_ticks)
  CPU_T0=$(date +%s.%N)
  local pid
  for pid in "${WATCH_PIDS[@]}"; do TICKS_BEFORE[$pid]=$(proc_ticks "$pid"); done
}
cpu_stop_json() {
  local after wall pid parts=() cores
  after=$(core_ticks)
  wall=$(awk -v a="$CPU_T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
  cores=$(awk 'NR==FNR{b[$1]=$2; t[$1]=$3; next}
    {dt=$3-t[$1]; p=(dt>0)?100*($2-b[$1])/dt:0; s=s sep "\"" $1 "\":" sprintf("%.1f", p); sep=","}
    END{print "{" s "}"}' <(echo "$CPU_BEFORE") <(echo "$after"))
  for pid in "${WATCH_PIDS[@]}"; do
    parts+=("\"${WATCH_NAMES[$pid]}\":$(awk -v a="${TICKS_BEFORE[$pid]}" -v b="$(proc_ticks "$pid")" \
      -v w="$wall" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", (w>0)?100*(b-a)/hz/w:0}')")
  done
  local IFS=,
  printf '{"cores_busy_pct":%s,"process_cpu_pct":{%s}}' "$cores" "${parts[*]}"
}
declare -A WATCH_NAMES
WATCH_PIDS=()
watch_pid() { WATCH_PIDS+=("$1"); WATCH_NAMES[$1]="$2"; }
unwatch_all() { WATCH_PIDS=(); WATCH_NAMES=(); }

# Redis commands by name (cmdstat_get 123), when REDIS_WATCH_PORT names the private Redis: the
# Redis runs report Redis calls per request.
REDIS_WATCH_PORT=""
redis_calls() {
  [ -n "$REDIS_WATCH_PORT" ] || return 0
  redis-cli -p "$REDIS_WATCH_PORT" info commandstats 2>/dev/null | tr -d '\r' |
    awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {sub(/^cmdstat_/, "", $1); print $1, $3}'
}
redis_calls_json() { # before after -> {"get":n,...} of the differences
  awk 'NR==FNR{b[$1]=$2; next} {d=$2-b[$1]; if (d>0) {s=s sep "\"" $1 "\":" d; sep=","}} END{print "{" s "}"}' \
    <(echo "$1") <(echo "$2")
}

record() { # one JSON line into results.jsonl
  printf '%s\n' "$1" >>"$RUN/results.jsonl"
}

# wrk_run SCENARIO REP CONNS SECS SCRIPT URL [VAR=value...]: REP "warmup" is not recorded.
wrk_run() {
  local scenario="$1" rep="$2" conns="$3" secs="$4" script="$5" url="$6"
  shift 6
  local out="$RUN/raw/$scenario-$rep.txt" json cpu threads="$WRK_THREADS" redis_before redis_extra=""
  [ "$threads" -le "$conns" ] || threads="$conns"
  redis_before=$(redis_calls)
  cpu_start
  if ! env BENCH_WRK_DIR="$BENCH_DIR/wrk" BENCH_THREADS="$threads" "$@" "${PIN_LOAD[@]}" \
    wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$BENCH_DIR/wrk/$script" "$url" \
    >"$out" 2>&1; then
    log "wrk failed for $scenario ($rep), see $out"
  fi
  cpu=$(cpu_stop_json)
  [ -z "$REDIS_WATCH_PORT" ] || redis_extra=",\"redis_calls\":$(redis_calls_json "$redis_before" "$(redis_calls)")"
  json=$(sed -n 's/^BENCH_JSON //p' "$out" | tail -n 1)
  if [ "$rep" = warmup ]; then return 0; fi
  if [ -z "$json" ]; then
    record "{\"scenario\":\"$scenario\",\"rep\":$rep,\"tool\":\"wrk\",\"connections\":$conns,\"failed\":true,\"raw\":\"raw/$scenario-$rep.txt\"}"
    return 0
  fi
  record "{\"scenario\":\"$scenario\",\"rep\":$rep,\"tool\":\"wrk\",\"connections\":$conns,\"threads\":$threads,\"secs\":$secs,\"wrk\":$json,\"cpu\":$cpu$redis_extra,\"raw\":\"raw/$scenario-$rep.txt\"}"
  log "$(printf '%-16s rep %s: %s' "$scenario" "$rep" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d["errors"]; print("%.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d" % (d["rps"], d["latency_us"]["p50"]/1e3, d["latency_us"]["p99"]/1e3, sum(e.values())))' "$json")")"
}

# redis-benchmark GET: the same number of clients, no pipelining, on the server cores while
# redis-server stays on the load cores, the placement Keel-on-Redis has (see PLACEMENT).
redis_bench_run() { # rep requests
  local rep="$1" n="$2" cpu rps p50 p99
  local out="$RUN/raw/redis-get-$rep.csv"
  cpu_start
  "${PIN_SERVER[@]}" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t get -c "$CONNS" -n "$n" -P 1 -q --csv >"$out" 2>&1 || true
  cpu=$(cpu_stop_json)
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  read -r rps p50 p99 < <(awk -F'"' '$2=="GET"{print $4, $10, $14}' "$out")
  if [ -z "${rps:-}" ]; then
    log "redis-benchmark failed, see $out"
    [ "$rep" = warmup ] || record "{\"scenario\":\"redis-get\",\"rep\":$rep,\"tool\":\"redis-benchmark\",\"failed\":true}"
    return 0
  fi
  REDIS_RPS="$rps"
  [ "$rep" != warmup ] || return 0
  record "{\"scenario\":\"redis-get\",\"rep\":$rep,\"tool\":\"redis-benchmark\",\"connections\":$CONNS,\"requests\":$n,\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"cpu\":$cpu,\"raw\":\"raw/redis-get-$rep.csv\"}"
  log "$(printf '%-16s rep %s: %.0f req/s  p50 %s ms  p99 %s ms' redis-get "$rep" "$rps" "$p50" "$p99")"
}

# pgbench -S (select-only: one primary-key SELECT per transaction, prepared, so one round trip):
# the limit of one PostgreSQL round trip per request at the same number of clients, on the
# server cores while PostgreSQL stays on the load cores (the placement of Keel on PostgreSQL).
pgbench_run() { # rep secs
  local rep="$1" secs="$2" cpu tps lat bin
  local out="$RUN/raw/pgbench-select-$rep.txt"
  bin=$(pg_bin)
  cpu_start
  "${PIN_SERVER[@]}" "$bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -S -M prepared \
    -c "$CONNS" -j 1 -T "$secs" -n pgbench >"$out" 2>&1 || true
  cpu=$(cpu_stop_json)
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -n 1)
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out" | tail -n 1)
  if [ -z "${tps:-}" ]; then
    log "pgbench failed, see $out"
    [ "$rep" = warmup ] || record "{\"scenario\":\"pgbench-select\",\"rep\":$rep,\"tool\":\"pgbench\",\"failed\":true}"
    return 0
  fi
  [ "$rep" != warmup ] || return 0
  record "{\"scenario\":\"pgbench-select\",\"rep\":$rep,\"tool\":\"pgbench\",\"connections\":$CONNS,\"secs\":$secs,\"rps\":$tps,\"mean_ms\":${lat:-null},\"cpu\":$cpu,\"raw\":\"raw/pgbench-select-$rep.txt\"}"
  log "$(printf '%-16s rep %s: %.0f tps  mean %s ms' pgbench-select "$rep" "$tps" "${lat:-?}")"
}

# loadgen_run SCENARIO REP TIMEOUT ARGS...: one JSON object on loadgen's stdout.
loadgen_run() {
  local scenario="$1" rep="$2" limit="$3"
  shift 3
  local out="$RUN/raw/$scenario-$rep.json" err="$RUN/raw/$scenario-$rep.err" cpu json
  cpu_start
  if ! timeout --signal=INT --kill-after=10 "$limit" "${PIN_LOAD[@]}" "$LOADGEN_BIN" --threads "$LOAD_THREADS" "$@" >"$out" 2>"$err"; then
    log "loadgen failed for $scenario ($rep), see $err"
  fi
  cpu=$(cpu_stop_json)
  [ "$rep" != warmup ] || return 0
  if ! json=$(python3 -c 'import json,sys; print(json.dumps(json.loads(open(sys.argv[1]).read())))' "$out" 2>/dev/null); then
    record "{\"scenario\":\"$scenario\",\"rep\":$rep,\"tool\":\"loadgen\",\"failed\":true,\"raw\":\"raw/$scenario-$rep.err\"}"
    return 0
  fi
  record "{\"scenario\":\"$scenario\",\"rep\":$rep,\"tool\":\"loadgen\",\"loadgen\":$json,\"cpu\":$cpu,\"raw\":\"raw/$scenario-$rep.json\"}"
  log "$scenario rep $rep: $json"
}

# N fresh sessions of the benchmark account: tokens in $RUN/tokens/NAME.{access,refresh}.
sessions() { # url n name [--register]
  local url="$1" n="$2" name="$3"
  shift 3
  python3 "$BENCH_DIR/sessions.py" "$url" "$BENCH_EMAIL" "$BENCH_PASSWORD" "$n" "$RUN/tokens/$name" "$@"
}

# --- the run -----------------------------------------------------------------------------------

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN="${OUT:-$ROOT/target/bench/$STAMP}"
mkdir -p "$RUN/raw" "$RUN/logs" "$RUN/tokens"
RUN="$(cd "$RUN" && pwd)"
: >"$RUN/results.jsonl"
log "run directory: $RUN"

install_tools

# Raise the file limit for the servers and the load generator (sockets are files).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

NPROC=$(nproc)
PIN_SERVER=()
PIN_LOAD=()
if [ "$NPROC" -ge 2 ]; then
  SERVER_CPUS="${SERVER_CPUS:-0}"
  LOAD_CPUS="${LOAD_CPUS:-1}"
  PIN_SERVER=(taskset -c "$SERVER_CPUS")
  PIN_LOAD=(taskset -c "$LOAD_CPUS")
  PLACEMENT="Servers (Keel, the hello-world) on core(s) $SERVER_CPUS; wrk, loadgen and the private redis-server on core(s) $LOAD_CPUS. actix sizes its workers from the affinity mask, so each server runs as many workers as it has cores, the hello-world exactly like Keel. Redis shares the load cores rather than the server's: in production Redis is another machine, and the server cores must measure Keel alone; the price is that wrk and redis-server compete on the load core in the Redis runs (the per-core busy figures in results.json show how much). The redis-benchmark reference runs its client on the server cores against redis-server on the load cores: the same placement as Keel talking to Redis."
else
  SERVER_CPUS="${SERVER_CPUS:-all}"
  LOAD_CPUS="${LOAD_CPUS:-all}"
  PLACEMENT="One core: nothing is pinned; servers, load generators and redis-server share it, so every figure is a lower bound."
fi
count_cpus() { # a taskset list like 0,2-3 -> 3
  local n=0 part
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}
if [ "$LOAD_CPUS" = all ]; then LOAD_THREADS=1; else LOAD_THREADS=$(count_cpus "$LOAD_CPUS"); fi
WRK_THREADS="$LOAD_THREADS"
log "placement: $PLACEMENT"

# The machine, before anything runs.
git_commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
M_BUSY=$(pgrep -a 'rustc|cargo' 2>/dev/null | awk '{print $2}' | sed 's|.*/||' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}' || true)
M_CPU_MODEL=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
M_RUSTC=$(rustc -V 2>/dev/null || echo unknown)
M_WRK=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}' || true)
M_REDIS=$(redis-server --version | awk '{print $3}' | sed 's/v=//')
export M_BUSY M_CPU_MODEL M_RUSTC M_WRK M_REDIS PLACEMENT COMMAND STAMP ONLY SERVER_CPUS LOAD_CPUS WRK_THREADS
python3 - "$RUN/machine.json" "$NPROC" "$git_commit" "$git_dirty" "$NOFILE" "$QUICK" "$DURATION" \
  "$REPS" "$WARMUP" "$CONNS" "$SWEEP_SECS" "$LOGIN_CONNS" "$ME_SESSIONS" "${SWEEP[@]}" <<'EOF'
import json, os, platform, sys
(path, nproc, commit, dirty, nofile, quick, duration, reps, warmup, conns, sweep_secs,
 login_conns, me_sessions, *sweep) = sys.argv[1:]
env = os.environ
mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
facts = {
    "date_utc": env["STAMP"],
    "command": env["COMMAND"],
    "nproc": int(nproc),
    "cpu_model": env["M_CPU_MODEL"],
    "memory_kib": mem_kib,
    "kernel": platform.release(),
    "rustc": env["M_RUSTC"],
    "git_commit": commit,
    "git_dirty_files": int(dirty or 0),
    "wrk": env["M_WRK"],
    "redis": env["M_REDIS"],
    "nofile_limit": nofile,
    "load_average_start": " ".join(open("/proc/loadavg").read().split()[:3]),
    "busy_at_start": env["M_BUSY"],
    "placement": env["PLACEMENT"],
    "server_cpus": env["SERVER_CPUS"],
    "load_cpus": env["LOAD_CPUS"],
    "settings": {
        "quick": quick == "1", "only": env["ONLY"], "duration_s": int(duration),
        "reps": int(reps), "warmup_s": int(warmup), "connections": int(conns),
        "sweep": [int(c) for c in sweep], "sweep_secs": int(sweep_secs),
        "login_connections": int(login_conns), "me_sessions": int(me_sessions),
        "wrk_threads": int(env["WRK_THREADS"]),
    },
}
json.dump(facts, open(path, "w"), indent=2)
EOF
if pgrep -x rustc >/dev/null 2>&1; then
  log "warning: rustc is running on this machine; figures will be noisy (recorded in machine.json)"
fi

# Release binaries.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER_BIN="$TARGET_DIR/release/server"
HELLO_BIN="$TARGET_DIR/release/bench-hello"
LOADGEN_BIN="$TARGET_DIR/release/loadgen"
if [ "$BUILD" = 1 ]; then
  log "building release binaries (cargo build --release -p server -p bench-hello -p loadgen)"
  if ! (cd "$ROOT" && cargo build --release -p server -p bench-hello -p loadgen); then
    # The load generator must not hold the HTTP scenarios hostage: build those alone.
    log "that build failed; building server and bench-hello without loadgen"
    (cd "$ROOT" && cargo build --release -p server -p bench-hello)
    LOADGEN_BUILD_FAILED=1
  fi
fi
if [ ! -x "$SERVER_BIN" ] || [ ! -x "$HELLO_BIN" ]; then die "release binaries missing in $TARGET_DIR/release"; fi
# When the binaries were built (with --no-build they may predate the commit recorded above).
BUILT_AT=$(date -u -r "$SERVER_BIN" +%Y-%m-%dT%H:%M:%SZ)
python3 - "$RUN/machine.json" "$BUILT_AT" "$BUILD" <<'EOF'
import json, sys
facts = json.load(open(sys.argv[1]))
facts["server_built_at"] = sys.argv[2]
facts["built_by_this_run"] = sys.argv[3] == "1"
json.dump(facts, open(sys.argv[1], "w"), indent=2)
EOF
# The processes run under names of their own (symlinks in the run directory), so that a stray
# `pkill server` or `pkill -f release/server` elsewhere on the machine does not end a run.
mkdir -p "$RUN/bin"
ln -sf "$SERVER_BIN" "$RUN/bin/keel-bench-server"
ln -sf "$HELLO_BIN" "$RUN/bin/keel-bench-hello"
SERVER_BIN="$RUN/bin/keel-bench-server"
HELLO_BIN="$RUN/bin/keel-bench-hello"
if [ -x "$LOADGEN_BIN" ]; then
  ln -sf "$LOADGEN_BIN" "$RUN/bin/keel-bench-loadgen"
  LOADGEN_BIN="$RUN/bin/keel-bench-loadgen"
fi

# The environment of every Keel: as shipped (development profile, every middleware on,
# access log on at `info`), JSON logs as in production, a shared Ed25519 key and cookie key
# (so several instances accept each other's tokens), throughput runs without limits.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^KEEL_' || true)
JWT_PEM=$(openssl genpkey -algorithm ed25519 2>/dev/null | awk '{printf "%s\\n", $0}')
KEEL_ENV=(
  KEEL_LOG__FORMAT=json
  "KEEL_AUTH__JWT__KEYS=[{kid=\"bench-$STAMP\",private_key_pem=\"$JWT_PEM\"}]"
  "KEEL_COOKIE__KEY=$(openssl rand -base64 64 | tr -d '\n')"
)
NO_LIMITS=(
  KEEL_RATE_LIMIT__ENABLED=false
  KEEL_REALTIME__CONNECTIONS_PER_IP_PER_SECOND=0
  KEEL_REALTIME__MAX_SOCKETS_PER_USER=0
  KEEL_REALTIME__EVENTS_PER_SOCKET_PER_SECOND=0
)
# Limits on, every quota far above what the run sends: the cost of checking, nothing refused.
RAISED_LIMITS=(
  KEEL_RATE_LIMIT__ENABLED=true
  KEEL_RATE_LIMIT__FLOOD_GUARD__PER_SECOND=1000000000
  KEEL_RATE_LIMIT__FLOOD_GUARD__BURST=1000000000
  "KEEL_RATE_LIMIT__QUOTAS__LOGIN_IP={limit=1000000,window_seconds=60}"
  "KEEL_RATE_LIMIT__QUOTAS__LOGIN_EMAIL={limit=1000000,window_seconds=60}"
  "KEEL_RATE_LIMIT__QUOTAS__REGISTER_IP={limit=1000000,window_seconds=60}"
  "KEEL_RATE_LIMIT__QUOTAS__REFRESH_IP={limit=1000000,window_seconds=60}"
)
BENCH_EMAIL="bench-$STAMP@example.com"
BENCH_PASSWORD="bench-password-$STAMP"

run_http() {
  log "== HTTP scenarios: $REPS x ${DURATION}s after ${WARMUP}s warm-up, $CONNS connections, wrk -t$WRK_THREADS"
  unwatch_all
  # Phase 1, in memory: the hello-world, Keel without limits, Keel with limits (raised), all
  # up at once (idle ones cost nothing) so the repetitions interleave and a drift of the
  # machine's speed hits every scenario alike.
  start_hello
  local hello_pid="$HELLO_PID" hello_url="$HELLO_URL"
  start_keel keel-memory "${NO_LIMITS[@]}"
  local mem_pid="$KEEL_PID" mem_url="$KEEL_URL"
  start_keel keel-memory-limits "${RAISED_LIMITS[@]}"
  local lim_pid="$KEEL_PID" lim_url="$KEEL_URL"
  watch_pid "$hello_pid" hello
  watch_pid "$mem_pid" keel
  watch_pid "$lim_pid" keel_limits
  sessions "$mem_url" "$ME_SESSIONS" me-memory --register
  sessions "$lim_url" "$ME_SESSIONS" me-limits --register

  wrk_run hello warmup "$CONNS" "$WARMUP" get.lua "$hello_url/"
  wrk_run health warmup "$CONNS" "$WARMUP" get.lua "$mem_url/health"
  wrk_run me-memory warmup "$CONNS" "$WARMUP" me.lua "$mem_url" BENCH_TOKENS="$RUN/tokens/me-memory.access"
  wrk_run me-memory-limits warmup "$CONNS" "$WARMUP" me.lua "$lim_url" BENCH_TOKENS="$RUN/tokens/me-limits.access"
  local rep
  for rep in $(seq "$REPS"); do
    wrk_run hello "$rep" "$CONNS" "$DURATION" get.lua "$hello_url/"
    wrk_run health "$rep" "$CONNS" "$DURATION" get.lua "$mem_url/health"
    wrk_run me-memory "$rep" "$CONNS" "$DURATION" me.lua "$mem_url" BENCH_TOKENS="$RUN/tokens/me-memory.access"
    wrk_run me-memory-limits "$rep" "$CONNS" "$DURATION" me.lua "$lim_url" BENCH_TOKENS="$RUN/tokens/me-limits.access"
  done
  proc_rss_kib "$mem_pid" >"$RUN/raw/keel-memory-rss-kib.txt"
  stop_pid "$hello_pid" "$RUN/logs/hello.log"
  stop_pid "$lim_pid" "$RUN/logs/keel-memory-limits.log"
  unwatch_all
  watch_pid "$mem_pid" keel

  # Latency against offered load, /me in memory. wrk is closed-loop: each connection sends its
  # next request when the previous answer arrives, so the offered load is set by the number of
  # connections, and the achieved rate is what the server sustained at that concurrency.
  log "== latency sweep of /me (closed loop): ${SWEEP[*]} connections, ${SWEEP_SECS}s each"
  local c
  for c in "${SWEEP[@]}"; do
    wrk_run "sweep-me-c$c" warmup "$c" 1 me.lua "$mem_url" BENCH_TOKENS="$RUN/tokens/me-memory.access"
    wrk_run "sweep-me-c$c" 1 "$c" "$SWEEP_SECS" me.lua "$mem_url" BENCH_TOKENS="$RUN/tokens/me-memory.access"
  done

  refresh_runs "$mem_url" refresh-memory

  # Login verifies an argon2id hash (19 MiB, t=2) per request on the blocking pool, at most one
  # per core at once; the rest queue (up to 5 s, then 503). At 64 connections the queue time
  # would be most of what is measured, so login runs at $LOGIN_CONNS connections.
  wrk_run login warmup "$LOGIN_CONNS" "$WARMUP" login.lua "$mem_url" BENCH_EMAIL="$BENCH_EMAIL" BENCH_PASSWORD="$BENCH_PASSWORD"
  for rep in $(seq "$REPS"); do
    wrk_run login "$rep" "$LOGIN_CONNS" "$DURATION" login.lua "$mem_url" BENCH_EMAIL="$BENCH_EMAIL" BENCH_PASSWORD="$BENCH_PASSWORD"
  done
  stop_pid "$mem_pid" "$RUN/logs/keel-memory.log"
  unwatch_all

  # Phase 2, on a private Redis: the redis-benchmark reference and /me interleaved.
  start_redis
  local redis_pid="$REDIS_PID"
  start_keel keel-redis "${NO_LIMITS[@]}" KEEL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
  local redis_keel_pid="$KEEL_PID" redis_url="$KEEL_URL"
  watch_pid "$redis_keel_pid" keel
  watch_pid "$redis_pid" redis
  sessions "$redis_url" "$ME_SESSIONS" me-redis --register
  # Give the GET keys a value first, then size the measured runs to about $DURATION s each.
  "${PIN_SERVER[@]}" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t set -c "$CONNS" -n 100000 -q >/dev/null 2>&1 || true
  REDIS_RPS=50000
  redis_bench_run warmup 200000
  local redis_n
  redis_n=$(awk -v r="$REDIS_RPS" -v d="$DURATION" 'BEGIN{n=int(r*d); if (n<10000) n=10000; print n}')
  wrk_run me-redis warmup "$CONNS" "$WARMUP" me.lua "$redis_url" BENCH_TOKENS="$RUN/tokens/me-redis.access"
  for rep in $(seq "$REPS"); do
    redis_bench_run "$rep" "$redis_n"
    REDIS_WATCH_PORT="$REDIS_PORT"
    wrk_run me-redis "$rep" "$CONNS" "$DURATION" me.lua "$redis_url" BENCH_TOKENS="$RUN/tokens/me-redis.access"
    REDIS_WATCH_PORT=""
  done
  REDIS_WATCH_PORT="$REDIS_PORT"
  refresh_runs "$redis_url" refresh-redis
  REDIS_WATCH_PORT=""
  stop_pid "$redis_keel_pid" "$RUN/logs/keel-redis.log"
  unwatch_all

  # Phase 3, on a private PostgreSQL: the pgbench -S reference; Keel on PostgreSQL alone (/me,
  # refresh, register, login); Keel on PostgreSQL + Redis (/me, interleaved with /me on Redis
  # alone, which it must stay close to: the user is read from its Redis snapshot).
  start_postgres
  local pg_pid="$PG_PID"
  start_keel keel-postgres "${NO_LIMITS[@]}" KEEL_DATABASE__URL="$PG_URL_BASE/keel"
  local pg_keel_pid="$KEEL_PID" pg_url="$KEEL_URL"
  watch_pid "$pg_keel_pid" keel
  watch_pid "$pg_pid" postgres
  sessions "$pg_url" "$ME_SESSIONS" me-postgres --register
  pgbench_run warmup "$WARMUP"
  wrk_run me-postgres warmup "$CONNS" "$WARMUP" me.lua "$pg_url" BENCH_TOKENS="$RUN/tokens/me-postgres.access"
  for rep in $(seq "$REPS"); do
    pgbench_run "$rep" "$DURATION"
    wrk_run me-postgres "$rep" "$CONNS" "$DURATION" me.lua "$pg_url" BENCH_TOKENS="$RUN/tokens/me-postgres.access"
  done
  refresh_runs "$pg_url" refresh-postgres
  wrk_run register-postgres warmup "$LOGIN_CONNS" "$WARMUP" register.lua "$pg_url" BENCH_EMAIL_PREFIX="warm-$STAMP"
  wrk_run login-postgres warmup "$LOGIN_CONNS" "$WARMUP" login.lua "$pg_url" BENCH_EMAIL="$BENCH_EMAIL" BENCH_PASSWORD="$BENCH_PASSWORD"
  for rep in $(seq "$REPS"); do
    wrk_run register-postgres "$rep" "$LOGIN_CONNS" "$DURATION" register.lua "$pg_url" BENCH_EMAIL_PREFIX="r$rep-$STAMP"
    wrk_run login-postgres "$rep" "$LOGIN_CONNS" "$DURATION" login.lua "$pg_url" BENCH_EMAIL="$BENCH_EMAIL" BENCH_PASSWORD="$BENCH_PASSWORD"
  done
  stop_pid "$pg_keel_pid" "$RUN/logs/keel-postgres.log"
  unwatch_all

  start_keel keel-redis-again "${NO_LIMITS[@]}" KEEL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
  local again_pid="$KEEL_PID" again_url="$KEEL_URL"
  start_keel keel-postgres-redis "${NO_LIMITS[@]}" KEEL_DATABASE__URL="$PG_URL_BASE/keel" \
    KEEL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT" KEEL_SESSION__KEY_PREFIX="keelpg:"
  local both_pid="$KEEL_PID" both_url="$KEEL_URL"
  watch_pid "$again_pid" keel
  watch_pid "$both_pid" keel_both
  watch_pid "$redis_pid" redis
  watch_pid "$pg_pid" postgres
  sessions "$again_url" "$ME_SESSIONS" me-redis-again
  sessions "$both_url" "$ME_SESSIONS" me-postgres-redis
  wrk_run me-redis-again warmup "$CONNS" "$WARMUP" me.lua "$again_url" BENCH_TOKENS="$RUN/tokens/me-redis-again.access"
  wrk_run me-postgres-redis warmup "$CONNS" "$WARMUP" me.lua "$both_url" BENCH_TOKENS="$RUN/tokens/me-postgres-redis.access"
  REDIS_WATCH_PORT="$REDIS_PORT"
  for rep in $(seq "$REPS"); do
    wrk_run me-redis-again "$rep" "$CONNS" "$DURATION" me.lua "$again_url" BENCH_TOKENS="$RUN/tokens/me-redis-again.access"
    wrk_run me-postgres-redis "$rep" "$CONNS" "$DURATION" me.lua "$both_url" BENCH_TOKENS="$RUN/tokens/me-postgres-redis.access"
  done
  REDIS_WATCH_PORT=""
  stop_pid "$again_pid" "$RUN/logs/keel-redis-again.log"
  stop_pid "$both_pid" "$RUN/logs/keel-postgres-redis.log"
  stop_pid "$redis_pid"
  stop_pid "$pg_pid"
  unwatch_all
}

# Refresh: every run gets fresh sessions, a few more than connections (a spent refresh token
# cannot be sent again: its session would be revoked for reuse); refresh.lua passes each new
# token back into a pool and says why it needs spares.
refresh_runs() { # url scenario
  local url="$1" scenario="$2" rep
  for rep in warmup $(seq "$REPS"); do
    sessions "$url" "$((CONNS + 2 * WRK_THREADS + 2))" "$scenario-$rep"
    local secs="$DURATION"
    [ "$rep" != warmup ] || secs="$WARMUP"
    wrk_run "$scenario" "$rep" "$CONNS" "$secs" refresh.lua "$url" BENCH_TOKENS="$RUN/tokens/$scenario-$rep.refresh"
  done
}

loadgen_works() {
  [ "$LOADGEN_BUILD_FAILED" = 0 ] && [ -x "$LOADGEN_BIN" ] || return 1
  local help
  help=$("$LOADGEN_BIN" --help 2>&1) || return 1
  grep -q idle <<<"$help" && grep -q fanout <<<"$help" && grep -q acks <<<"$help"
}

run_realtime() {
  if ! loadgen_works; then
    log "== realtime scenarios SKIPPED: '$LOADGEN_BIN --help' does not describe idle/fanout/acks yet (apps/loadgen unfinished?)"
    echo '{"skipped":"loadgen --help does not work yet"}' >"$RUN/raw/realtime-skipped.json"
    return 0
  fi
  log "== realtime scenarios: loadgen with --threads $LOAD_THREADS"
  local rep n sizes=(1000 10000)
  # 50,000 sockets need 50,000 descriptors in the server and in loadgen (plus a margin).
  if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -gt 51000 ]; then
    sizes+=(50000)
  else
    log "idle 50000: skipped, the hard file limit is $(ulimit -Hn) (needs > 51000)"
    echo "{\"skipped\":\"hard file limit $(ulimit -Hn) <= 51000\"}" >"$RUN/raw/idle-50000-skipped.json"
  fi
  # Idle capacity: a fresh server per repetition, so each sees the growth from a clean start.
  for n in "${sizes[@]}"; do
    local source_ips=()
    [ "$n" -le 25000 ] || source_ips=(--source-ips "127.0.0.1,127.0.0.2,127.0.0.3")
    for rep in $(seq "$REPS"); do
      unwatch_all
      start_keel "keel-idle-$n-$rep" "${NO_LIMITS[@]}"
      watch_pid "$KEEL_PID" keel
      loadgen_run "idle-$n" "$rep" 900 --url "$KEEL_URL" idle --sockets "$n" --server-pid "$KEEL_PID" \
        --hold-secs 2 "${source_ips[@]}"
      stop_pid "$KEEL_PID" "$RUN/logs/keel-idle-$n-$rep.log"
    done
  done

  # Fan-out and acks, one instance in memory.
  unwatch_all
  start_keel keel-realtime "${NO_LIMITS[@]}"
  local rt_pid="$KEEL_PID" rt_url="$KEEL_URL"
  watch_pid "$rt_pid" keel
  fanout_runs fanout-memory --url "$rt_url"
  loadgen_run acks warmup 300 --url "$rt_url" acks --sockets "$ACK_SOCKETS" --duration-secs "$WARMUP" --warmup-secs 1
  for rep in $(seq "$REPS"); do
    loadgen_run acks "$rep" 300 --url "$rt_url" acks --sockets "$ACK_SOCKETS" --duration-secs "$DURATION" --warmup-secs 1
  done
  stop_pid "$rt_pid" "$RUN/logs/keel-realtime.log"
  unwatch_all

  # Fan-out across two instances on one private Redis: the sender on the first, the room's
  # sockets spread over both.
  start_redis
  local redis_pid="$REDIS_PID"
  start_keel keel-redis-a "${NO_LIMITS[@]}" KEEL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
  local a_pid="$KEEL_PID" a_url="$KEEL_URL"
  start_keel keel-redis-b "${NO_LIMITS[@]}" KEEL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
  local b_pid="$KEEL_PID" b_url="$KEEL_URL"
  watch_pid "$a_pid" keel_a
  watch_pid "$b_pid" keel_b
  watch_pid "$redis_pid" redis
  fanout_runs fanout-redis --url "$a_url" --url "$b_url"
  stop_pid "$a_pid" "$RUN/logs/keel-redis-a.log"
  stop_pid "$b_pid" "$RUN/logs/keel-redis-b.log"
  stop_pid "$redis_pid"
  unwatch_all
}

fanout_runs() { # prefix --url A [--url B]
  local prefix="$1" rep paced_messages
  shift
  paced_messages=$((FANOUT_RATE * DURATION))
  loadgen_run "$prefix-burst" warmup 300 "$@" fanout --sockets "$FANOUT_SOCKETS" --messages 50 --mode burst
  for rep in $(seq "$REPS"); do
    loadgen_run "$prefix-burst" "$rep" 600 "$@" fanout --sockets "$FANOUT_SOCKETS" --messages "$FANOUT_BURST_MESSAGES" --mode burst
  done
  for rep in $(seq "$REPS"); do
    loadgen_run "$prefix-paced" "$rep" 600 "$@" fanout --sockets "$FANOUT_SOCKETS" --messages "$paced_messages" \
      --mode paced --rate "$FANOUT_RATE"
  done
}

# Each family runs in a subshell with its own clean-up, so one that fails (a server killed from
# outside, say) stops its own processes and the other family and the report still run.
run_phase() { # name function
  local rc
  set +e
  (
    set -e
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    "$2"
  )
  rc=$?
  set -e
  [ "$rc" -ne 130 ] || exit 130
  if [ "$rc" -ne 0 ]; then
    log "the $1 scenarios stopped early (exit $rc); the report shows what they measured"
    echo "{\"failed\":\"exit $rc\"}" >"$RUN/raw/phase-$1-failed.json"
  fi
}
[ "$ONLY" = realtime ] || run_phase http run_http
[ "$ONLY" = http ] || run_phase realtime run_realtime

M_BUSY=$(pgrep -a 'rustc|cargo' 2>/dev/null | awk '{print $2}' | sed 's|.*/||' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}' || true)
export M_BUSY
python3 - "$RUN/machine.json" <<'EOF'
import json, os, sys
facts = json.load(open(sys.argv[1]))
facts["load_average_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
facts["busy_at_end"] = os.environ["M_BUSY"]
json.dump(facts, open(sys.argv[1], "w"), indent=2)
EOF

report_args=("$RUN")
if [ "$DOCS" = 1 ]; then report_args+=(--docs "$ROOT/docs"); fi
python3 "$BENCH_DIR/report.py" "${report_args[@]}"
if [ "$DOCS" = 1 ]; then log "done: $RUN/results.json and docs/benchmarks.md"; else log "done: $RUN/results.json"; fi
