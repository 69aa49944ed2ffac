#!/usr/bin/env bash
# Stop the local cluster that scripts/slurm/up.sh started: cancel its jobs, then stop each daemon by
# the pid in its pid file, after checking /proc/PID/exe is that daemon (never by name: other users'
# processes are left alone). Idempotent; exits non-zero if a daemon could not be stopped.
#   --purge   also delete the state folder (accounting database, job ids, munge key)
# Packages stay installed.
set -uo pipefail
. "$(dirname "$0")/common.sh"

[ -d "$STATE" ] || { echo "no cluster state in $STATE: nothing to stop"; exit 0; }

stop() {  # $1 = daemon name
  local name=$1 pid t
  if ! pid=$(daemon_pid "$name"); then
    [ -e "${PIDFILE[$name]}" ] && echo "$name: pid file names no running $name; removed"
    rm -f "${PIDFILE[$name]}"
    return 0
  fi
  t=$(now)
  kill -TERM "$pid"
  # Wait for the pid itself to go: an exiting process loses its /proc/PID/exe before it is gone.
  for _ in $(seq 1 80); do [ -e "/proc/$pid" ] || break; sleep 0.25; done
  if daemon_pid "$name" >/dev/null; then
    echo "$name ($pid) ignored SIGTERM for 20 s: SIGKILL"
    kill -KILL "$pid"
    for _ in $(seq 1 20); do [ -e "/proc/$pid" ] || break; sleep 0.25; done
  fi
  if [ -e "/proc/$pid" ]; then echo "$name ($pid) still running" >&2; return 1; fi
  rm -f "${PIDFILE[$name]}"
  echo "$name ($pid) stopped in $(since "$t") s"
}

# Jobs first, while slurmctld and slurmd can still end them; every job on this cluster is ours.
if daemon_pid slurmctld >/dev/null; then
  jobs=$(squeue -h -o %i 2>/dev/null)
  if [ -n "$jobs" ]; then
    echo "cancelling jobs: $(echo $jobs)"
    scancel $jobs
    for _ in $(seq 1 120); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
  fi
fi

status=0
for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop "${DAEMONS[$i]}" || status=1; done

# The link up.sh made for job steps (only ours: a link to this cluster's config).
if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ] && [ $status = 0 ]; then
  rm -f "$SYSTEM_CONF"
fi

if [ "${1:-}" = --purge ] && [ $status = 0 ]; then
  rm -rf "$STATE"
  echo "state $STATE removed"
fi
exit $status
