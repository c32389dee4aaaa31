#!/bin/sh
# `make lint`: the C sources formatted as .clang-format says (the format
# describes the code as written: `make format` changes nothing on a clean
# tree), cppcheck's warnings, and the layout rules (build/lint_layout.py).
# Part of `make test`.
set -eu
cd "$(dirname "$0")/.."

files=$(ls mod_mailguard/*.c mod_mailguard/*.h mod_mailguard/core/*.c mod_mailguard/core/*.h \
    dbmail_tap/*.c dbmail_tap/*.h)

echo "lint: clang-format"
clang-format --style=file --dry-run --Werror $files

echo "lint: cppcheck"
cppcheck --quiet --enable=warning,portability,performance --std=c11 --inline-suppr \
    --error-exitcode=1 -I mod_mailguard/core -I dbmail_tap \
    --template='{file}:{line}: {severity}: {message} [{id}]' \
    mod_mailguard/core dbmail_tap mod_mailguard/*.c

echo "lint: layout"
/usr/bin/python3 build/lint_layout.py
