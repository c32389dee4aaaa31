#!/bin/sh
# Runs every benchmark in tests/bench (bench_*.sh and bench_*.py), each
# printing its figures as ratios measured side by side in one run.
# Not part of `make test`.  Usage: run.sh BUILD_DIR [name-filter]
set -u
b=$(cd "${1:-build}" && pwd)
filter=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
rc=0
for f in "$here"/bench_*.sh "$here"/bench_*.py; do
    [ -e "$f" ] || continue
    case "$f" in *"$filter"*) ;; *) continue ;; esac
    echo "=== $(basename "$f")"
    case "$f" in
        *.py) MG_BUILD=$b /usr/bin/python3 "$f" || rc=1 ;;
        *.sh) MG_BUILD=$b sh "$f" || rc=1 ;;
    esac
done
exit $rc
