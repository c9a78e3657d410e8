#!/usr/bin/env bash
# Set up a development checkout: system packages the tests drive (when root and missing),
# a virtualenv in .venv, and asgiprof installed editable with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

# Headless Chromium for the HTML report tests, PostgreSQL for the sync-vs-async driver tests,
# wrk for the overhead benchmark, Go for `go tool pprof` (the pprof reader of the fleet tests),
# node for the report script's unit tests (tests/js, run by tests/unit/test_report_js.py).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v node >/dev/null 2>&1 || need+=(nodejs)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need[*]} (apt-get)"
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "setup: please install ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
# Virtualenvs of the other CPythons pyenv provides, for the target-Python tests (the tests
# build a missing one themselves; doing it here keeps their run time predictable).
.venv/bin/python -m tests.targets 3.9 3.10 3.12 3.13 || echo "setup: no extra target Pythons (pyenv)" >&2
echo "setup: done (.venv)"
