#!/usr/bin/env bash
# Runs MemGen's four services as separate local processes (one JVM each, gRPC on loopback), the way a
# microservice deployment runs them. Builds the services on first use.
#
#   deploy/local/services.sh start --model DIR --memory DIR [--log HOST:PORT --store DIR]
#                                  start reasoner, trigger, weaver and trainer services (any already
#                                  running are left alone, so this also restarts one that died). With
#                                  --log (a Kafka bootstrap) and --store (the adapter store directory) the
#                                  loop is on: the reasoner records trajectories and takes feedback, the
#                                  trainer trains windows into the store, the weaver and trigger swap new versions in.
#   deploy/local/services.sh status    which are running, on which ports
#   deploy/local/services.sh stop      stop them all
#
# The reasoner serves the checkpoint in --model and reaches the memory in --memory (made for that
# checkpoint, e.g. by `memgen init-memory`) through the trigger and weaver services.
# Ports: gRPC on MEMGEN_GRPC_PORT_BASE + 0..3 (default 9000..9003), HTTP on MEMGEN_HTTP_PORT_BASE + 0..3
# (default 8080..8083), in the order reasoner, trigger, weaver, trainer. Logs and pid files go to
# MEMGEN_RUN_DIR (default .memgen/run). MEMGEN_JAVA_OPTS is passed to every JVM (e.g. -Dmemgen.trigger.mode=...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir="${MEMGEN_RUN_DIR:-$root/.memgen/run}"
grpc_base="${MEMGEN_GRPC_PORT_BASE:-9000}"
http_base="${MEMGEN_HTTP_PORT_BASE:-8080}"
services=(reasoner-service trigger-service weaver-service trainer-service)
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid of a running service. A killed service whose parent never reaps it (pid 1 in some containers) stays
# a zombie that `kill -0` still finds: that counts as stopped.
pid_of() {
  local f="$run_dir/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

start() {
  local model="" memory="" log="" store=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --model) model="$2"; shift 2 ;;
      --memory) memory="$2"; shift 2 ;;
      --log) log="$2"; shift 2 ;;
      --store) store="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$model" ] || { echo "services.sh start: --model DIR is required (the reasoner's checkpoint)" >&2; exit 2; }
  [ -f "$model/config.json" ] || { echo "services.sh start: $model has no config.json" >&2; exit 2; }
  [ -n "$memory" ] || { echo "services.sh start: --memory DIR is required (make one with: memgen init-memory --model $model --out DIR)" >&2; exit 2; }
  [ -f "$memory/manifest.json" ] || { echo "services.sh start: $memory has no manifest.json" >&2; exit 2; }
  model="$(cd "$model" && pwd)"
  memory="$(cd "$memory" && pwd)"
  if [ -n "$log" ] || [ -n "$store" ]; then
    [ -n "$log" ] && [ -n "$store" ] || { echo "services.sh start: --log and --store go together" >&2; exit 2; }
    mkdir -p "$store"
    store="$(cd "$store" && pwd)"
  fi
  local missing=()
  for s in "${services[@]}"; do
    [ -f "$root/$s/target/quarkus-app/quarkus-run.jar" ] || missing+=("$s")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "building ${missing[*]} ..." >&2
    (IFS=,; "$root/mvnw" -q -B -pl "${missing[*]}" -am package -DskipTests 1>&2)
  fi
  mkdir -p "$run_dir"
  local i=0
  for s in "${services[@]}"; do
    if pid="$(pid_of "$s")"; then
      echo "$s already running (pid $pid)" >&2
    else
      local args=(-Dquarkus.grpc.server.port=$((grpc_base + i)) -Dquarkus.http.port=$((http_base + i)))
      case "$s" in
        reasoner-service) args+=(-Dmemgen.model.dir="$model" -Dmemgen.trigger.target="127.0.0.1:$((grpc_base + 1))"
                                 -Dmemgen.weaver.target="127.0.0.1:$((grpc_base + 2))") ;;
        *) args+=(-Dmemgen.model.dir="$model" -Dmemgen.memory.dir="$memory") ;;
      esac
      if [ -n "$log" ]; then
        case "$s" in
          reasoner-service) args+=(-Dmemgen.log.bootstrap="$log" -Dmemgen.log.spool-dir="$run_dir/reasoner-spool") ;;
          weaver-service) args+=(-Dmemgen.log.bootstrap="$log" -Dmemgen.adapters.store="$store"
                                 -Dmemgen.adapters.cache-dir="$run_dir/weaver-adapters") ;;
          trigger-service) args+=(-Dmemgen.log.bootstrap="$log" -Dmemgen.adapters.store="$store"
                                  -Dmemgen.adapters.cache-dir="$run_dir/trigger-adapters") ;;
          trainer-service) args+=(-Dmemgen.log.bootstrap="$log" -Dmemgen.adapters.store="$store"
                                  -Dmemgen.trainer.work-dir="$run_dir/trainer-work") ;;
        esac
      fi
      # The trainer's float sums independent of memory alignment and of the load (MKL's conditional numerical
      # reproducibility, and no dynamic thread count), so that `memgen adapters rebuild` can reproduce its versions.
      env_opts=()
      [ "$s" = trainer-service ] && env_opts=("MKL_CBWR=${MKL_CBWR:-AUTO}" "MKL_DYNAMIC=${MKL_DYNAMIC:-FALSE}")
      env ${env_opts[@]+"${env_opts[@]}"} "$java" "${args[@]}" ${MEMGEN_JAVA_OPTS:-} -jar "$root/$s/target/quarkus-app/quarkus-run.jar" \
        > "$run_dir/$s.log" 2>&1 &
      echo $! > "$run_dir/$s.pid"
    fi
    i=$((i + 1))
  done
  # Wait (up to 120 s) until every service has started: Quarkus opens the gRPC port before the model is loaded and
  # warm (calls then get UNAVAILABLE), and logs "started in" once it is. Report a service that died.
  i=0
  for s in "${services[@]}"; do
    local port=$((grpc_base + i)) waited=0
    until port_open "$port" && grep -q " started in " "$run_dir/$s.log"; do
      if ! pid_of "$s" > /dev/null; then
        echo "$s failed to start; its log ($run_dir/$s.log) ends with:" >&2
        tail -n 20 "$run_dir/$s.log" >&2
        stop; exit 1
      fi
      [ $waited -ge 1200 ] && { echo "$s did not start (port $port) within 120 s" >&2; stop; exit 1; }
      sleep 0.1; waited=$((waited + 1))
    done
    echo "$s pid $(cat "$run_dir/$s.pid") grpc 127.0.0.1:$port"
    i=$((i + 1))
  done
}

status() {
  local i=0
  for s in "${services[@]}"; do
    if pid="$(pid_of "$s")"; then
      echo "$s running pid $pid grpc 127.0.0.1:$((grpc_base + i))"
    else
      echo "$s stopped"
    fi
    i=$((i + 1))
  done
}

stop() {
  for s in "${services[@]}"; do
    if pid="$(pid_of "$s")"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "$s stopped"
    fi
    rm -f "$run_dir/$s.pid"
  done
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
