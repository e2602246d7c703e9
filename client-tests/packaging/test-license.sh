#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-license.sh SOURCE_DIR — the project is BSD-3-Clause (as nbdkit): LICENSE holds the text, every source
# file says so in an SPDX line near its top, and the Debian copyright file names the same license.
set -euo pipefail
src=$1
cd "$src"
fail() { echo "FAIL: $*" >&2; exit 1; }
grep -q "Redistribution and use in source and binary forms" LICENSE || fail "LICENSE lacks the BSD-3-Clause text"
grep -q "Neither the name of the copyright holder" LICENSE || fail "LICENSE is not the 3-clause text"
grep -q "^License: BSD-3-Clause" packaging/debian/copyright || fail "packaging/debian/copyright does not say BSD-3-Clause"
if [[ -d .git ]] || git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files)
else
  mapfile -t files < <(find . -type f -not -path './build*' -not -path './.git/*' | sed 's|^\./||')
fi
missing=()
for f in "${files[@]}"; do
  [[ -f $f && ! -L $f ]] || continue
  case $f in
    *.cpp|*.h|*.c|*.sh|*.py|*CMakeLists.txt|*.cmake) ;;
    *) head -c2 "$f" | grep '^#!' >/dev/null || continue ;;
  esac
  head -n 5 "$f" | grep "SPDX-License-Identifier: BSD-3-Clause" >/dev/null || missing+=("$f")
done
((${#missing[@]} == 0)) || fail "no 'SPDX-License-Identifier: BSD-3-Clause' in the first 5 lines of: ${missing[*]}"
echo "ok: LICENSE, debian/copyright and ${#files[@]} tracked files checked"
