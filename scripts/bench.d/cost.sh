#!/usr/bin/env bash
# The cost of a request, bare against cached, in one service process:
# interleaved wrk runs of bare.lua and cached.lua at 64 connections, each
# under `perf stat -p` on the service, reported per request (task-clock µs,
# context switches, syscalls by kind, page faults). Counts are robust to a
# shared machine where req/s is not.
#
#   scripts/bench.d/cost.sh [SERVICE] [ROUNDS] [SECONDS]
#
# SERVICE defaults to target/release/troupe (built beforehand); TROUPE__*
# variables reach it. Uses the local services with a database and key prefix
# of its own (cost_<pid>), dropped at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
service="${1:-target/release/troupe}" rounds="${2:-3}" seconds="${3:-8}"
export BENCH_LUA="$ROOT/scripts/bench.d"
export MONGODB_URI="${MONGODB_URI:-mongodb://127.0.0.1:27017}" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
run_id="${COST_PREFIX:-cost}_$$"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
env -u TROUPE_ENV PORT="$port" MONGODB_DB="$run_id" REDIS_KEY_PREFIX="$run_id:" LOG_DIR="$work/logs" \
  TROUPE__MAIL__OUTBOX_DIR="$work/outbox" TROUPE__AUTH__BCRYPT_COST=4 \
  TROUPE__LIMITS__PROFILE_LOOKUPS__PER_ADDRESS=1000000000 TROUPE__LIMITS__SIGNUPS__PER_ADDRESS=1000000000 \
  RUST_LOG="${RUST_LOG:-warn}" "$service" >"$work/troupe.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  "${COST_TOOL:-target/release/troupe-bench}" dropdb "$MONGODB_URI" "$run_id" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$run_id:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
until curl -fsS "$base/health/ready" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/troupe.log" >&2; exit 1; }
  sleep 0.05
done
for i in $(seq "${COST_USERS:-50}"); do
  access="$(curl -fsS -H 'content-type: application/json' \
    -d "{\"name\":\"Cost\",\"email\":\"cost-$i-$run_id@example.com\",\"password\":\"correct horse battery\"}" \
    "$base/users/signup" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')"
  curl -fsS -H "authorization: Bearer $access" "$base/users/profile" | sed -E 's/.*"id":"([^"]+)".*/\1/'
  echo
done >"$work/ids"
export BENCH_IDS="$work/ids"
while read -r id; do curl -fsS "$base/users/$id" >/dev/null; done <"$work/ids"
events="task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter"
events+=",syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_recvfrom"
events+=",syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_read"
echo "pid $pid"
for r in $(seq "$rounds"); do
  for route in bare cached; do
    perf stat -x, -e "$events" -p "$pid" -o "$work/stat" -- \
      wrk -t2 -c64 -d"${seconds}s" -s "$BENCH_LUA/$route.lua" "$base/health/live" >"$work/wrk" 2>&1
    python3 - "$route" "$r" "$work/stat" "$work/wrk" <<'PY'
import json, sys
route, r, stat, wrk = sys.argv[1:]
res = json.loads(open(wrk).read().strip().splitlines()[-1])
n = res["requests"]
counts = {}
for line in open(stat):
    parts = line.strip().split(",")
    if len(parts) < 3 or line.startswith("#"):
        continue
    try:
        counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = float(parts[0])
    except ValueError:
        pass
per = lambda k: counts.get(k, 0) / n
print(f"{route:6} r{r} req/s {res['rps']:8.0f} cpu_us {per('task-clock') * 1000:6.2f} "
      f"cs {per('context-switches'):.3f} pf {per('page-faults'):.4f} mig {per('cpu-migrations'):.4f} "
      f"sys {per('sys_enter'):.3f} epoll {per('epoll_wait'):.3f} futex {per('futex'):.3f} "
      f"recv {per('recvfrom'):.3f} send {per('sendto'):.3f} writev {per('writev'):.3f} "
      f"write {per('write'):.3f} read {per('read'):.3f} errors {res['errors']}", flush=True)
PY
  done
done
if [[ -n ${COST_HOLD:-} ]]; then echo "holding: pid $pid, ids $BENCH_IDS, base $base"; sleep "$COST_HOLD"; fi
