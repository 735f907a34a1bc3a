# Shared by the perf/run_*.sh scripts (source it): the commit a result file is tagged with, how
# busy the machine is, and waiting for it to go idle on a shared machine.

# The short commit, with "-dirty" when the tree has uncommitted changes ("uncommitted" outside
# git).
commit_tag() {
  local c
  if c=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff-index --quiet HEAD -- 2>/dev/null || c="$c-dirty"
    echo "$c"
  else
    echo uncommitted
  fi
}

# Percent of CPU time the whole machine spent busy over the next SECONDS (default 1), all CPUs,
# from /proc/stat (iowait counts as idle).
busy_pct() {
  local a b total=0 idle i
  read -ra a < <(grep '^cpu ' /proc/stat)
  sleep "${1:-1}"
  read -ra b < <(grep '^cpu ' /proc/stat)
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(((total - idle) * 100 / (total > 0 ? total : 1)))
}

# wait_for_idle SECONDS [THRESHOLD_PCT]: on a shared machine, wait (at most SECONDS; 0: not at
# all) for 10 consecutive seconds at or under THRESHOLD_PCT busy (default 5), so other
# people's builds stay out of the figures; says so on stderr when it gives up.
wait_for_idle() {
  local limit=${1:-0} threshold=${2:-5} deadline quiet=0
  ((limit > 0)) || return 0
  deadline=$((SECONDS + limit))
  while ((quiet < 10 && SECONDS < deadline)); do
    if (($(busy_pct) <= threshold)); then quiet=$((quiet + 1)); else quiet=0; fi
  done
  ((quiet >= 10)) || echo "WARNING: the machine did not go idle within ${limit} s; measuring anyway" >&2
}
