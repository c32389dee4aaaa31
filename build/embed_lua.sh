#!/bin/sh
# Embeds each Lua script as a C string so the scripts in
# mod_mailguard/core/lua/ stay the single source of truth for policy.
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
    echo "extern const char mg_lua_$name[];" >>"$h"
    {
        echo "const char mg_lua_$name[] ="
        # Escape backslashes and quotes; one C string literal per line.
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
        echo "    ;"
    } >>"$c"
done
echo "#endif" >>"$h"
mv "$h" "$out/mg_lua.h"; mv "$c" "$out/mg_lua.c"
