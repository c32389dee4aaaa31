#!/bin/sh
# Embeds each Lua script as a C string so the scripts in
# mod_mailguard/core/lua/ stay the single source of truth for policy.
# A line "-- #include NAME" is replaced by core/lua/include/NAME: Redis
# runs each script alone, so what several scripts share (the change log)
# is written once there and copied in here.
# Usage: embed_lua.sh OUTDIR file.lua...  -> OUTDIR/mg_lua.c, OUTDIR/mg_lua.h
set -eu
out=$1; shift
h=$out/mg_lua.h.tmp; c=$out/mg_lua.c.tmp
{
    echo "/* Generated from the scripts in mod_mailguard/core/lua/ by build/embed_lua.sh. */"
    echo "#ifndef MG_LUA_H"
    echo "#define MG_LUA_H"
} >"$h"
echo '#include "mg_lua.h"' >"$c"
for f in "$@"; do
    name=$(basename "$f" .lua)
    inc=$(dirname "$f")/include
    echo "extern const char mg_lua_$name[];" >>"$h"
    {
        echo "const char mg_lua_$name[] ="
        # Expand includes, then escape backslashes and quotes; one C string
        # literal per line.
        while IFS= read -r line || [ -n "$line" ]; do
            case $line in
            "-- #include "*)
                part=$inc/${line#-- #include }
                [ -f "$part" ] || { echo "embed_lua.sh: $f: no $part" >&2; exit 1; }
                cat "$part" ;;
            *) printf '%s\n' "$line" ;;
            esac
        done <"$f" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/'
        echo "    ;"
    } >>"$c"
done
echo "#endif" >>"$h"
mv "$h" "$out/mg_lua.h"; mv "$c" "$out/mg_lua.c"
