#!/usr/bin/env bash
# What `make test` needs besides Python packages, set up where this machine allows: PostgreSQL
# and Redis running on their local default ports, and Debian's Chromium for the browser test.
# What it cannot set up it says in one line; the tests then stop with an error, never a skip.
set -uo pipefail

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null \
    || echo "tests/setup.sh: PostgreSQL is not running on 127.0.0.1:5432 and could not be started here (install and start it, or set KIDNEY_TEST_DATABASE_URL)"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  if command -v redis-server >/dev/null; then
    mkdir -p /tmp/kidney-test-redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp/kidney-test-redis --logfile /tmp/kidney-test-redis/redis.log || true
    for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG \
    || echo "tests/setup.sh: Redis is not running on 127.0.0.1:6379 and could not be started here (install redis-server, or set KIDNEY_TEST_BROKER_URL)"
fi

# The browser test drives Debian's Chromium through Playwright: no browser download.
if [ -z "${KIDNEY_TEST_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  if can_install; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  fi
  command -v chromium >/dev/null \
    || echo "tests/setup.sh: cannot install Debian's chromium here (needs root and apt-get); the browser test will fail (or set KIDNEY_TEST_CHROMIUM to a Chromium binary)"
fi
# The DICOM gateway's tests: Debian's Orthanc as the PACS and dcmtk's storescu as a sender.
if ! command -v Orthanc >/dev/null && [ ! -x /usr/sbin/Orthanc ] || ! command -v storescu >/dev/null; then
  if can_install; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc dcmtk) >/dev/null
  fi
  { [ -x /usr/sbin/Orthanc ] && command -v storescu >/dev/null; } \
    || echo "tests/setup.sh: cannot install Debian's orthanc and dcmtk here; the DICOM gateway's tests will fail"
fi
exit 0
