#!/bin/sh
# Runs every unit-test binary in BUILD/tests; fails when any fails or when
# there is none (a runner that collects nothing must not pass).
set -u
b=${1:-build}
n=0; bad=0
for t in "$b"/tests/test_*; do
    [ -x "$t" ] || continue
    n=$((n + 1))
    echo "== $(basename "$t")"
    if ! "$t"; then bad=$((bad + 1)); echo "FAILED: $t"; fi
done
if [ "$n" -eq 0 ]; then echo "no unit tests found in $b/tests" >&2; exit 1; fi
echo "unit: $((n - bad)) passed, $bad failed"
[ "$bad" -eq 0 ]
