#!/usr/bin/env bash
# Start, stop or check the demo clamd on 127.0.0.1:3310.
#
#   scripts/clamd.sh start|stop|status [DATA_DIR]      (DATA_DIR defaults to var/)
#
# start renders config/clamd.conf into DATA_DIR/clamd.conf with absolute paths
# (clamd requires them), starts clamd with the local test signatures in
# config/clamav and waits until it answers PING. It does nothing when something
# already answers PING on the port, so it is safe to run repeatedly.
# Environment: MUGAI_CLAMD_PORT (default 3310), MUGAI_CLAMD_WAIT (seconds, default 60),
# MUGAI_CLAMD (the clamd binary).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status [DATA_DIR]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
cmd=$1
data_arg=${2:-var}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host=127.0.0.1
port=${MUGAI_CLAMD_PORT:-3310}
wait_s=${MUGAI_CLAMD_WAIT:-60}
[[ $port =~ ^[0-9]+$ ]] || { echo "MUGAI_CLAMD_PORT must be a number" >&2; exit 2; }
[[ $wait_s =~ ^[0-9]+$ ]] || { echo "MUGAI_CLAMD_WAIT must be whole seconds" >&2; exit 2; }

# Send one NUL-terminated command over TCP; print the reply. Bounded by `timeout`.
clamd_say() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "%s\0" "$3" >&3
        IFS= read -r -d "" -t 4 reply <&3 || exit 1
        printf "%s\n" "$reply"
    ' clamd_say "$host" "$port" "$1" 2>/dev/null
}
answers_ping() { [[ $(clamd_say zPING || true) == PONG ]]; }

abs_data_dir() {
    mkdir -p "$data_arg"
    (cd "$data_arg" && pwd)
}

running_pid() {  # the pid from our pid file, if that process is alive
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

find_clamd() {
    if [[ -n ${MUGAI_CLAMD:-} ]]; then echo "$MUGAI_CLAMD"
    elif [[ -x /usr/sbin/clamd ]]; then echo /usr/sbin/clamd
    else command -v clamd || true
    fi
}

start() {
    if answers_ping; then
        echo "clamd already answers on $host:$port"
        return 0
    fi
    local data clamd conf sock pid
    clamd=$(find_clamd)
    if [[ -z $clamd || ! -x $clamd ]]; then
        echo "error: clamd not found; install it: apt-get install clamav-daemon" >&2
        return 1
    fi
    data=$(abs_data_dir)
    conf=$data/clamd.conf
    sock=$data/clamd.sock
    if pid=$(running_pid "$data/clamd.pid"); then
        echo "error: clamd (pid $pid, $data) is running but does not answer on $host:$port;" \
             "see $data/clamd.log or run: $0 stop $data_arg" >&2
        return 1
    fi
    rm -f "$data/clamd.pid"
    mkdir -p "$data/clamd-tmp"
    sed -e "s|@CONFIG_DIR@|$(sed_escape "$repo/config")|g" \
        -e "s|@DATA_DIR@|$(sed_escape "$data")|g" \
        -e "s|^TCPSocket .*|TCPSocket $port|" \
        -e "s|^TCPAddr .*|TCPAddr $host|" \
        "$repo/config/clamd.conf" >"$conf.tmp"
    if (( ${#sock} > 100 )); then
        # sockaddr_un holds 108 bytes; the demo only needs TCP.
        echo "note: $sock is too long for a unix socket; TCP only" >&2
        sed -i -e '/^LocalSocket/d' "$conf.tmp"
    fi
    mv "$conf.tmp" "$conf"

    local log_start
    touch "$data/clamd.log"  # a first start has no log yet (and pipefail would stop us)
    log_start=$(( $(wc -l < "$data/clamd.log") + 1 ))
    echo "starting clamd ($clamd -c $conf)"
    # clamd daemonizes once its database is loaded; its own errors go to the log.
    if ! "$clamd" -c "$conf" >>"$data/clamd.out" 2>&1; then
        echo "error: clamd failed to start:" >&2
        tail -n 20 "$data/clamd.out" "$data/clamd.log" 2>/dev/null >&2 || true
        return 1
    fi
    local deadline=$((SECONDS + wait_s))
    until answers_ping; do
        if (( SECONDS >= deadline )) || ! running_pid "$data/clamd.pid" >/dev/null; then
            echo "error: clamd did not answer PING on $host:$port within ${wait_s}s" >&2
            # e.g. "ERROR: TCP: Cannot bind to [127.0.0.1]:3310: Address already in use"
            tail -n +"$log_start" "$data/clamd.log" 2>/dev/null | grep -E 'ERROR|WARNING' >&2 \
                || tail -n 20 "$data/clamd.log" >&2 2>/dev/null || true
            # clamd keeps running on its unix socket when TCP fails: don't leave it behind.
            if pid=$(running_pid "$data/clamd.pid"); then
                kill -TERM "$pid" 2>/dev/null || true
                rm -f "$data/clamd.pid"
            fi
            return 1
        fi
        sleep 0.2
    done
    echo "clamd answers on $host:$port ($(clamd_say zVERSION)); log: $data/clamd.log"
}

stop() {
    local data pid
    if [[ ! -d $data_arg ]]; then
        echo "clamd not running (no $data_arg)"
        return 0
    fi
    data=$(abs_data_dir)
    if ! pid=$(running_pid "$data/clamd.pid"); then
        rm -f "$data/clamd.pid"
        if answers_ping; then
            echo "clamd on $host:$port was not started from $data; leaving it alone"
        else
            echo "clamd not running"
        fi
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { echo "clamd stopped"; rm -f "$data/clamd.pid"; return 0; }
        sleep 0.2
    done
    echo "clamd (pid $pid) ignored SIGTERM for 10s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$data/clamd.pid"
}

status() {
    if answers_ping; then
        echo "clamd answers on $host:$port ($(clamd_say zVERSION))"
    else
        echo "clamd does not answer on $host:$port"
        return 1
    fi
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
