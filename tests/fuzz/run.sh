#!/bin/sh
# Builds the fuzz targets with clang's libFuzzer plus AddressSanitizer and
# UBSan straight from the sources, then runs each for a bounded time.
# Usage: run.sh [OUT_DIR]   (default build/fuzz)
# Environment: FUZZ_SECONDS per target (default 60), FUZZ_CC (default clang).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/fuzz}
secs=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run.sh: $cc not found (sh build/deps.sh --extra installs it)" >&2
    exit 1
fi
mkdir -p "$out"
cd "$root"

flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -fno-omit-frame-pointer
       -I mod_mailguard/core -I dbmail_tap"
pcre=$(pkg-config --cflags --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)
match_src="dbmail_tap/tap_match.c dbmail_tap/tap_scan.c dbmail_tap/tap_filters.c dbmail_tap/tap_find.c
           dbmail_tap/tap_regex.c mod_mailguard/core/mg_addr.c"
config_src="$match_src dbmail_tap/tap_config.c dbmail_tap/tap_ini.c
            mod_mailguard/core/mg_policy.c mod_mailguard/core/mg_store_url.c"

# shellcheck disable=SC2086
$cc $flags -o "$out/fuzz_match" tests/fuzz/fuzz_match.c $match_src $pcre -lm
# shellcheck disable=SC2086
$cc $flags -o "$out/fuzz_forge" tests/fuzz/fuzz_forge.c $match_src $pcre -lm
# shellcheck disable=SC2086
$cc $flags -o "$out/fuzz_config" tests/fuzz/fuzz_config.c $config_src $pcre -lm
# shellcheck disable=SC2086
$cc $flags -o "$out/fuzz_classify" tests/fuzz/fuzz_classify.c \
    mod_mailguard/core/mg_classify.c $pcre

rc=0
for t in match forge config classify; do
    corpus="$out/corpus_$t"
    mkdir -p "$corpus"
    cp -n "$here/seeds/$t/"* "$corpus/" 2>/dev/null || true
    case $t in
        match) maxlen=70000 ;;   # room for a line beyond the 64 KiB limit
        forge) maxlen=4400 ;;    # a username past DBMail's 4094-byte message
        *) maxlen=8192 ;;
    esac
    echo "== fuzz_$t for ${secs}s"
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$out/fuzz_$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
        -artifact_prefix="$out/crash_${t}_" -print_final_stats=1 "$corpus" \
        >"$out/fuzz_$t.log" 2>&1; then
        echo "FAILED: fuzz_$t (see $out/fuzz_$t.log and $out/crash_${t}_*)"
        tail -40 "$out/fuzz_$t.log"
        rc=1
    else
        grep -E 'stat::number_of_executed_runs|Done [0-9]+ runs' "$out/fuzz_$t.log" | tail -2
        echo "fuzz_$t: clean"
    fi
done
exit $rc
