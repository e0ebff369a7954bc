#!/usr/bin/env bash
# bench/core.sh: the request core's load benchmark. Runs the httpcore engine
# and a plain net/http server (bench/server: same certificate, same "hello"
# handler) side by side, the server pinned to one core and the load
# generator to another, in interleaved rounds, and reports for each:
#   - server CPU time (utime+stime from /proc/PID/stat) per HTTPS keep-alive
#     request under wrk,
#   - the same per h2 request under h2load (16 connections x 10 streams),
#   - server memory (VmRSS after a GC) per idle TLS keep-alive connection.
# Needs wrk and h2load (Debian: wrk, nghttp2-client) and taskset.
#
# This machine class is noisy: the same server's CPU per request moves by
# 30% between runs a minute apart. So the two servers run back to back in
# each round (the order alternating), and the ratio reported is the median
# of the per-round ratios, beside each server's median.
#
# With NGINX=1 (and nginx installed) nginx joins each round as a third
# subject, one process (master_process off), the same certificate, a fixed
# "hello": the reference the goals were set against, measured here rather
# than quoted.
#
# Environment: DUR (seconds per load run, 5), ROUNDS (5), CONNS (wrk
# connections, 50), IDLE_N (idle connections, 1000), SERVER_CPU (0),
# CLIENT_CPU (1), NGINX (0), NGINX_PORT (18443).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-5}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-50}
IDLE_N=${IDLE_N:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX:-0}
NGINX_PORT=${NGINX_PORT:-18443}
SUBJECTS="httpcore nethttp"
if [ "$NGINX" = 1 ]; then
	command -v nginx >/dev/null || { echo "core.sh: NGINX=1 but nginx not found (Debian: nginx)" >&2; exit 1; }
	SUBJECTS="httpcore nethttp nginx"
fi

for tool in wrk h2load taskset; do
	command -v "$tool" >/dev/null || { echo "core.sh: $tool not found (Debian: wrk, nghttp2-client, util-linux)" >&2; exit 1; }
done

work=$(mktemp -d)
PID=""
IDLE_PID=""
cleanup() {
	[ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true
	[ -n "$PID" ] && kill "$PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/server" ./bench/server
"$work/server" -gencert "$work"
CLK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true

start_nginx() {
	mkdir -p "$work/nginx"
	cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 65536; }
http {
	access_log off;
	server_tokens off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 120s;
	http2_max_requests 10000000;
	ssl_certificate $work/cert.pem;
	ssl_certificate_key $work/key.pem;
	ssl_protocols TLSv1.2 TLSv1.3;
	server {
		listen 127.0.0.1:$NGINX_PORT ssl http2;
		location / { default_type text/plain; return 200 "hello"; }
	}
}
EOF
	taskset -c "$SERVER_CPU" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx.out" 2>&1 &
	PID=$!
	ADDR=127.0.0.1:$NGINX_PORT
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && return
		sleep 0.05
	done
	cat "$work/nginx.out" "$work/nginx/error.log" >&2
	exit 1
}

start_server() { # mode
	if [ "$1" = nginx ]; then
		start_nginx
		return
	fi
	taskset -c "$SERVER_CPU" "$work/server" -mode "$1" -cert "$work/cert.pem" -key "$work/key.pem" >"$work/$1.out" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		grep -q '^ready' "$work/$1.out" 2>/dev/null && break
		sleep 0.05
	done
	ADDR=$(awk '/^ready/ {print $2}' "$work/$1.out")
	[ -n "$ADDR" ] || { cat "$work/$1.out"; exit 1; }
}

stop_server() {
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=""
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
gc() { kill -USR1 "$PID"; sleep 1; }

measure_idle() { # prints bytes per idle connection
	gc
	local before after
	before=$(rss_kb)
	taskset -c "$CLIENT_CPU" "$work/server" -mode idle -addr "$ADDR" -n "$IDLE_N" >"$work/idle.out" 2>&1 &
	IDLE_PID=$!
	for _ in $(seq 600); do
		grep -q '^idle' "$work/idle.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '^idle' "$work/idle.out" || { cat "$work/idle.out" >&2; exit 1; }
	sleep 1
	gc
	after=$(rss_kb)
	kill "$IDLE_PID" 2>/dev/null || true
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
	sleep 1
	echo $(( (after - before) * 1024 / IDLE_N ))
}

measure_wrk() { # prints us per request
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "https://$ADDR/" >/dev/null # warm-up
	local t0 t1 reqs
	t0=$(cpu_ticks)
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" "https://$ADDR/" >"$work/wrk.out"
	t1=$(cpu_ticks)
	reqs=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	awk -v d=$((t1 - t0)) -v clk="$CLK" -v n="$reqs" 'BEGIN {printf "%.1f %d\n", d * 1e6 / clk / n, n}'
}

measure_h2() { # prints us per request
	local t0 t1 reqs
	t0=$(cpu_ticks)
	taskset -c "$CLIENT_CPU" h2load -c16 -m10 -D "$DUR" "https://$ADDR/" >"$work/h2.out" 2>&1
	t1=$(cpu_ticks)
	reqs=$(awk '/^requests:/ {print $8}' "$work/h2.out")
	[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$work/h2.out" >&2; echo "0 0"; return; }
	awk -v d=$((t1 - t0)) -v clk="$CLK" -v n="$reqs" 'BEGIN {printf "%.1f %d\n", d * 1e6 / clk / n, n}'
}

echo "core.sh: server on CPU $SERVER_CPU, load on CPU $CLIENT_CPU, ${DUR}s runs, $ROUNDS rounds, $(nproc) CPUs, $(go version | awk '{print $3}')"
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
	order=$SUBJECTS
	[ $((round % 2)) -eq 0 ] && order=$(echo "$SUBJECTS" | tr ' ' '\n' | tac | paste -sd' ')
	for mode in $order; do
		start_server "$mode"
		idle_b=$(measure_idle)
		read -r h1_us h1_n < <(measure_wrk)
		read -r h2_us h2_n < <(measure_h2)
		stop_server
		echo "$mode $h1_us $h2_us $idle_b $round" >>"$results"
		printf 'round %d %-9s h1 %6s us/req (%s req)  h2 %6s us/req (%s req)  idle %6s B/conn\n' \
			"$round" "$mode" "$h1_us" "$h1_n" "$h2_us" "$h2_n" "$idle_b"
	done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2}'; }
col() { awk -v m="$1" -v c="$2" '$1 == m {print $c}' "$results" | median; }
echo
printf '%-9s %18s %18s %20s\n' server "HTTPS keep-alive" "h2 (16x10)" "idle TLS conn"
for mode in $SUBJECTS; do
	printf '%-9s %13s us/req %13s us/req %15s B/conn\n' "$mode" "$(col $mode 2)" "$(col $mode 3)" "$(col $mode 4)"
done
# ratios MODE COL: MODE / net/http per round, one per line.
ratios() { awk -v m="$1" -v c="$2" '{v[$1, $5] = $c; r[$5] = 1} END {for (k in r) if (v["nethttp", k] > 0) printf "%.3f\n", v[m, k] / v["nethttp", k]}' "$results"; }
for mode in $SUBJECTS; do
	[ "$mode" = nethttp ] && continue
	printf '%-9s %16.2fx %16.2fx %18.2fx   (/ net/http: median of per-round ratios)\n' \
		"$mode" "$(ratios $mode 2 | median)" "$(ratios $mode 3 | median)" "$(ratios $mode 4 | median)"
	echo "  per-round h1 ratios: $(ratios $mode 2 | sort -n | paste -sd' ')"
	echo "  per-round h2 ratios: $(ratios $mode 3 | sort -n | paste -sd' ')"
done
