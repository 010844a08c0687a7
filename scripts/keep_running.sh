#!/usr/bin/env bash
# keep_running.sh COMMAND [ARGS...]
#
# Run COMMAND and start it again whenever it exits, until this script is told to stop
# (SIGTERM/SIGINT, e.g. from honcho or Ctrl-C). `make run` wraps every Procfile line in it:
# honcho stops all processes as soon as one exits, so one crash (or a deliberate restart,
# `kill <pid>` of the child) would otherwise take the web server, the simulator and the
# workers down with it. Pauses between restarts double from 1 s up to 30 s and reset when
# the command ran for a minute. Production uses a real supervisor instead (docs/supervision.md).
set -u
child=""
stopping=""

stop() {
  stopping=1
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT

delay=1
while :; do
  started=$SECONDS
  "$@" &
  child=$!
  # A stop that came between the fork and the line above found no child to pass on to: pass it on now.
  if [ -n "$stopping" ]; then kill -TERM "$child" 2>/dev/null; fi
  # `wait` returns early when a trapped signal arrives: keep waiting until the child is gone.
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=""
  [ -n "$stopping" ] && exit 0
  if [ $((SECONDS - started)) -ge 60 ]; then delay=1; fi
  echo "keep_running: '$*' exited with status $rc; starting it again in ${delay}s" >&2
  sleep "$delay" &
  wait $! 2>/dev/null
  [ -n "$stopping" ] && exit 0
  delay=$((delay * 2 > 30 ? 30 : delay * 2))
done
