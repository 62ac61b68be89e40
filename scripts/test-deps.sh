#!/usr/bin/env bash
# What `make test` needs besides the venv, then runs its arguments (e.g. pytest) with AIFX_TEST_PG_URL set:
#   - promtool (rule and metric checks) and prometheus (live scrape test): Debian package `prometheus`;
#   - podman, runc and debootstrap (the container test builds and runs the serving image: docs/deployment.md);
#   - a running local PostgreSQL when one is installed (the `postgres` tests; they skip without it
#     locally and fail under CI).
set -euo pipefail

die() { echo "test-deps: $*" >&2; exit 1; }

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "promtool and prometheus are needed: install Debian's prometheus package (sudo apt-get install prometheus)"
  fi
  echo "test-deps: installing Debian's prometheus package (promtool, prometheus)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The container test must not skip in CI: install what `make container` needs when root can.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "test-deps: podman, runc and debootstrap are missing, the container test will skip (fail under CI):" \
      "sudo apt-get install podman runc debootstrap" >&2
  else
    echo "test-deps: installing Debian's podman, runc and debootstrap (the container test)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  fi
fi

if [ -d /etc/postgresql ] && command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  cluster="$(ls /etc/postgresql)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: PostgreSQL is not running, the postgres tests will skip (fail under CI):" \
      "sudo pg_ctlcluster --skip-systemctl-redirect $cluster main start" >&2
  else
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL $cluster/main started but not ready on 127.0.0.1:5432"
  fi
fi
export AIFX_TEST_PG_URL="${AIFX_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

exec "$@"
