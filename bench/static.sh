#!/usr/bin/env bash
# bench/static.sh: one 1 MiB static file over HTTPS, tlsedge next to nginx
# (the Debian package), in one run: throughput and server CPU per byte.
#
#   bench/static.sh /path/to/tlsedge [seconds]
#
# Both servers get the same self-signed P-256 certificate, the same file and
# the same load: wrk, one thread, CONNS keep-alive connections (default 8),
# for the given seconds (default 10) after a 2 s warm-up. Server CPU is the
# user+system time of the server's processes (nginx: master and workers)
# read from /proc before and after the measured run, divided by the bytes
# wrk received. Neither server logs requests; nginx uses its defaults
# otherwise (sendfile does not apply under TLS without kTLS), tlsedge its
# defaults plus the flags below and TLSEDGE_ARGS.
#
# Environment: CONNS, THREADS (wrk threads, default 1), TLSEDGE_ARGS (extra
# flags), TLSEDGE_TLS_ARGS (replaces the builtin-certificate flags, e.g.
# "--ssl-module internal --data-dir DIR" for a build without the builtin
# module), NGINX (binary, default /usr/sbin/nginx), KEEP=1 keeps the work
# directory.
# Needs: wrk, nginx, openssl, curl (Debian packages of the same names).
set -euo pipefail

bin=${1:?usage: bench/static.sh /path/to/tlsedge [seconds]}
secs=${2:-10}
conns=${CONNS:-8}
threads=${THREADS:-1}
nginx=${NGINX:-/usr/sbin/nginx}
for need in wrk openssl curl "$nginx"; do
	command -v "$need" >/dev/null || { echo "missing $need: apt-get install -y wrk nginx openssl curl" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }

work=$(mktemp -d /tmp/tlsedge-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ "${KEEP:-0}" = 1 ] && echo "work directory kept: $work" || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/nginx"
head -c 1048576 /dev/urandom >"$work/www/1m.bin"
# nginx workers run as an unprivileged user when started by root.
chmod 0755 "$work" "$work/www"
chmod 0644 "$work/www/1m.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_tls=$(free_port)
port_ngx=$(free_port)
ncpu=$(nproc)
tck=$(getconf CLK_TCK)

# cpu_ticks PID... prints utime+stime of the processes, in clock ticks.
cpu_ticks() {
	local sum=0 p f
	for p in "$@"; do
		# Fields after the ")" that closes the command name: utime is 12th, stime 13th.
		f=$(sed 's/.*) //' "/proc/$p/stat")
		set -- $f
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}

wait_up() {
	for _ in $(seq 100); do
		curl -skf --http1.1 -o /dev/null "https://127.0.0.1:$1/1m.bin" && return 0
		sleep 0.1
	done
	echo "server on port $1 did not come up" >&2
	return 1
}

# run NAME PORT PIDS_FUNC: warm up, then measure; prints one result line.
run() {
	local name=$1 port=$2 pidsfn=$3
	wrk -t"$threads" -c"$conns" -d2s "https://127.0.0.1:$port/1m.bin" >/dev/null
	local ps before after out reqs mib
	ps=$($pidsfn)
	before=$(cpu_ticks $ps)
	out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" "https://127.0.0.1:$port/1m.bin")
	after=$(cpu_ticks $ps)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	echo "$out" >"$work/$name.wrk"
	python3 - "$name" "$reqs" "$secs" "$((after - before))" "$tck" <<'PY'
import sys
name, reqs, secs, ticks, tck = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mib = reqs  # one MiB per request
cpu = ticks / tck
print(f"{name:<8} {reqs/secs:>9.1f} {mib/secs:>9.1f} {cpu:>9.2f} {cpu/secs*100:>7.0f}% {cpu*1e3/max(mib,1):>11.2f} {cpu*1e9/max(mib*1048576,1):>9.3f}")
PY
}

# nginx: defaults of the Debian package where they matter here.
cat >"$work/nginx/nginx.conf" <<NGX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
	include /etc/nginx/mime.types;
	access_log off;
	sendfile on;
	keepalive_requests 100000;
	client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
	uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
	server {
		listen 127.0.0.1:$port_ngx ssl;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		# Go picks AES-128-GCM under TLS 1.3; nginx would follow OpenSSL
		# clients to AES-256-GCM. Same suite for both, or the race is unfair.
		ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
		root $work/www;
	}
}
NGX
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx/stderr" &
ngx_master=$!
pids+=("$ngx_master")

# shellcheck disable=SC2086
tls_args=${TLSEDGE_TLS_ARGS:---ssl-module builtin --ssl-certificate $work/cert.pem --ssl-private-key $work/key.pem}
"$bin" serve --socket-host 127.0.0.1 --socket-port "$port_tls" $tls_args \
	--mount "/=dir:$work/www" ${TLSEDGE_ARGS:-} >"$work/tlsedge.log" 2>&1 &
tls_pid=$!
pids+=("$tls_pid")

wait_up "$port_ngx" || { cat "$work/nginx/stderr" >&2; exit 1; }
wait_up "$port_tls" || { cat "$work/tlsedge.log" >&2; exit 1; }

ngx_pids() { echo "$ngx_master $(pgrep -P "$ngx_master" | tr '\n' ' ')"; }
tls_pids() { echo "$tls_pid"; }

echo "1 MiB static file over HTTPS: wrk -t$threads -c$conns, ${secs}s each, $ncpu CPUs, $(uname -r)"
echo "tlsedge: $("$bin" version 2>/dev/null | head -1 || echo "$bin")"
echo "nginx:   $("$nginx" -v 2>&1)"
cipher() { openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | awk '/^New,/ {print $2, $NF}'; }
echo "negotiated (as wrk's OpenSSL would): tlsedge $(cipher "$port_tls"), nginx $(cipher "$port_ngx")"
echo
printf '%-8s %9s %9s %9s %8s %11s %9s\n' server req/s MiB/s cpu-s cpu "cpu-ms/MiB" "ns/byte"
run tlsedge "$port_tls" tls_pids
run nginx "$port_ngx" ngx_pids
echo
echo "cpu: server CPU as a share of one core; wrk runs on the same machine."
