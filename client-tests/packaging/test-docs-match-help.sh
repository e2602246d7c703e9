#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-docs-match-help.sh SOURCE-DIR NBDSNAPD NBDSNAP [FILTER.so] — the man page sources say what the programs
# say: every option in `nbdsnapd --help` is in docs/nbdsnapd.pod and in the packaged nbdsnapd.conf; every
# command of `nbdsnap --help` and every option of `nbdsnap COMMAND --help` is in docs/nbdsnap.pod; every
# parameter of the filter's help is in docs/nbdkit-nbdsnap-filter.pod. Fails listing what is missing.
set -euo pipefail
top=${1:?usage: $0 SOURCE-DIR NBDSNAPD NBDSNAP [FILTER.so]}
nbdsnapd=$2
nbdsnap=$3
filter=${4:-}
missing=()

long_options() { grep -oE '(^|[ ,])--[a-z][a-z0-9-]*' | sed 's/^[ ,]*//' | sort -u; }

# nbdsnapd: options in the man page (B<--opt>) and keys in the configuration file (`opt =`, maybe commented).
for option in $("$nbdsnapd" --help | long_options); do
  grep -qF "B<$option>" "$top/docs/nbdsnapd.pod" || missing+=("docs/nbdsnapd.pod: $option")
  case $option in --help | --version | --config) continue ;; esac
  grep -qE "^#? *${option#--} = " "$top/packaging/nbdsnapd.conf" || missing+=("packaging/nbdsnapd.conf: ${option#--}")
done

# nbdsnap: each command's words (B<snapshot create>) and each of its options (B<--opt>).
help=$("$nbdsnap" --help)
for option in $(sed -n '/^Global options:/,/^$/p' <<<"$help" | long_options); do
  grep -qF "B<$option>" "$top/docs/nbdsnap.pod" || missing+=("docs/nbdsnap.pod: global $option")
done
while read -r synopsis; do
  words=$(sed -E 's/ ([A-Z[-]).*//' <<<"$synopsis")  # the command words before the first argument or option
  grep -qF "B<$words" "$top/docs/nbdsnap.pod" || missing+=("docs/nbdsnap.pod: command '$words'")
  # shellcheck disable=SC2086 # the command words are separate arguments
  for option in $("$nbdsnap" $words --help | long_options); do
    [[ $option == --help ]] && continue
    grep -qF "B<$option>" "$top/docs/nbdsnap.pod" || missing+=("docs/nbdsnap.pod: $words $option")
  done
done < <(sed -n '/^Commands:/,/^$/p' <<<"$help" | grep -E '^  [a-z]' | sed 's/^  //')

# The filter: `nbdkit --filter=SO null --help` lists its parameters as nbdsnap-NAME=. An ASan build of the
# filter needs the sanitizer runtime preloaded into nbdkit (NBDSNAP_NBDKIT_PRELOAD, set by CMake); only
# nbdkit gets it, so that the shell tools here run as usual.
if [[ -n $filter ]] && command -v nbdkit >/dev/null; then
  filter_help=$(LD_PRELOAD=${NBDSNAP_NBDKIT_PRELOAD:-} ASAN_OPTIONS=detect_leaks=0 \
    nbdkit --filter="$filter" null --help 2>&1) || true
  grep -qE '^nbdsnap-[a-z-]+=' <<<"$filter_help" || missing+=("nbdkit --filter=$filter --help lists no parameters: $filter_help")
  for parameter in $(grep -oE '^nbdsnap-[a-z-]+=' <<<"$filter_help" | sort -u); do
    grep -qF "B<$parameter>" "$top/docs/nbdkit-nbdsnap-filter.pod" ||
      missing+=("docs/nbdkit-nbdsnap-filter.pod: $parameter")
  done
fi

if ((${#missing[@]})); then
  printf 'not documented: %s\n' "${missing[@]}" >&2
  exit 1
fi
echo PASS
