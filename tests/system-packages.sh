#!/usr/bin/env bash
# The system packages the test suite drives as real processes, installed when missing:
#   chromium    tests/ui drive it through Playwright (never `playwright install`)
#   postgresql  tests/deploy start their own server with initdb/pg_ctl
# The one place that knows the list: `make test` runs it, and so does CI through `make test`.
# Skip it with `make test SYSTEM_PACKAGES=0` (those tests then fail naming what is missing).
set -euo pipefail

missing=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null \
  || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get install -y ${missing[*]}"
if ! command -v apt-get >/dev/null; then
  echo "system packages missing: ${missing[*]} (Debian's packages; no apt-get here)." >&2
  echo "Install them with your package manager, or run: make test SYSTEM_PACKAGES=0" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "system packages missing: ${missing[*]}; as root run: $command" >&2
  echo "(or skip them: make test SYSTEM_PACKAGES=0)" >&2
  exit 1
fi

echo "installing system packages for the tests: ${missing[*]}"
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  # The tests start their own server: no default cluster, no service left running.
  "${sudo[@]}" mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  "${missing[@]}" >/dev/null
