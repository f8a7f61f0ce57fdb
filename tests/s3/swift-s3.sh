#!/usr/bin/env bash
# A real S3-compatible object store on 127.0.0.1 for custody's tests: OpenStack Swift from
# Debian's packages with its s3api middleware, one node, one replica.
#
#   swift-s3.sh start DIR [PORT]   installs the packages if missing (root, apt), starts
#                                  memcached and the four Swift servers, waits until the
#                                  API answers
#   swift-s3.sh stop DIR           stops what `start DIR` started
#
# Endpoint http://127.0.0.1:PORT, path-style addressing, region us-east-1, access key
# "test:tester", secret "testing". Anonymous reads of a public-read bucket:
# http://127.0.0.1:PORT/v1/AUTH_test/BUCKET/KEY (Cache-Control set at upload is served).
# Swift servers drop privileges to user "swift" unless told `user = root`; tempauth keeps
# tokens in memcached; s3api needs slo for multipart uploads.
set -eu
cmd=${1:-}; D=${2:-}; PORT=${3:-8089}
[ -n "$cmd" ] && [ -n "$D" ] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }

stop() {
  for p in "$D"/run/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; rm -f "$p"; done
  return 0
}
[ "$cmd" = stop ] && { stop; exit 0; }
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }

if ! command -v swift-proxy-server >/dev/null || ! command -v memcached >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swift \
     swift-proxy swift-object swift-container swift-account memcached) >/dev/null 2>&1 \
     || { echo "could not install swift and memcached with apt" >&2; exit 1; }
fi
stop
rm -rf "$D"; mkdir -p "$D/etc" "$D/srv/d1" "$D/run" "$D/log"
MC=$((PORT + 3000))
memcached -u root -l 127.0.0.1 -p "$MC" -P "$D/run/memcached.pid" -d
printf '[memcache]\nmemcache_servers = 127.0.0.1:%s\n' "$MC" > "$D/etc/memcache.conf"
n=0
for s in account container object; do
  port=$((PORT + 1000 + n)); n=$((n + 1))
  cat > "$D/etc/$s-server.conf" <<C
[DEFAULT]
devices = $D/srv
mount_check = false
user = root
bind_ip = 127.0.0.1
bind_port = $port
workers = 1
swift_dir = $D/etc
[pipeline:main]
pipeline = $s-server
[app:$s-server]
use = egg:swift#$s
[$s-replicator]
[$s-updater]
[$s-auditor]
C
  (cd "$D/etc" && swift-ring-builder $s.builder create 6 1 1 >/dev/null \
     && swift-ring-builder $s.builder add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null \
     && swift-ring-builder $s.builder rebalance >/dev/null)
  swift-$s-server "$D/etc/$s-server.conf" -v >"$D/log/$s.log" 2>&1 &
  echo $! > "$D/run/$s.pid"
done
cat > "$D/etc/proxy-server.conf" <<C
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PORT
workers = 1
user = root
swift_dir = $D/etc
[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:s3api]
use = egg:swift#s3api
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
C
swift-proxy-server "$D/etc/proxy-server.conf" -v >"$D/log/proxy.log" 2>&1 &
echo $! > "$D/run/proxy.pid"
for _ in $(seq 150); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Auth-User: test:tester' \
         -H 'X-Auth-Key: testing' "http://127.0.0.1:$PORT/auth/v1.0" || true)
  [ "$code" = 200 ] && { echo "S3 API at http://127.0.0.1:$PORT"; exit 0; }
  sleep 0.2
done
echo "swift did not come up; logs in $D/log" >&2; stop; exit 1
