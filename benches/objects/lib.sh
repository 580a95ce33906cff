# lib.sh - what bench.sh and services.sh share: sourced after they set TAG, WORK, NS,
# RESULTS_DIR, BUILD and BIN_DIR (and PID, the switch's, while one runs).

cleanup() {
  set +e
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p vswitch -p vswitchctl
fi
VSWITCHD=$(realpath "$BIN_DIR/vswitchd")
VSWITCHCTL=$(realpath "$BIN_DIR/vswitchctl")

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "disk: $(df -h "$WORK" | awk 'NR==2 {print $1, $6}')"
} > "$RESULTS_DIR/env.txt"

stats() { # a file of microseconds -> "median p90 p99 max" in ms
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - - -"; exit }
    printf "%.2f %.2f %.2f %.2f\n", v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.9 + 0.5)] / 1000,
      v[int(NR * 0.99 + 0.5)] / 1000, v[NR] / 1000 }'
}

stop_switch() { kill "$PID"; wait "$PID" || true; PID=""; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
