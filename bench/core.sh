#!/usr/bin/env bash
# bench/core.sh: the request core's load benchmark. Runs the httpcore engine
# and a plain net/http server (bench/server: same certificate, same "hello"
# handler) side by side, the server pinned to one core and the load
# generator to another, in interleaved rounds, and reports for each:
#   - server CPU time (utime+stime from /proc/PID/stat) per HTTPS keep-alive
#     request under wrk,
#   - the same per h2 request under h2load (16 connections x 10 streams),
#   - server memory (VmRSS after a GC) per idle TLS keep-alive connection,
#     HTTP/1.1 and h2 (one request made on each, then held with nothing going
#     on: bench/server -mode idle and -mode idleh2).
# Needs wrk and h2load (Debian: wrk, nghttp2-client) and taskset.
#
# This machine class is noisy: the same server's CPU per request moves by
# 30% between runs a minute apart. So every subject runs at once (idle ones
# cost nothing), the load runs are short and alternate between subjects
# round by round, and the ratio reported is the median of the per-round
# ratios, beside each subject's median. Idle memory is measured first, once
# per subject, on fresh processes.
#
# With NGINX=1 (and nginx installed) nginx joins each round as a third
# subject, one process (master_process off), the same certificate, a fixed
# "hello": the reference the goals were set against, measured here rather
# than quoted.
#
# Environment: DUR (seconds per load run, 3), ROUNDS (7), CONNS (wrk
# connections, 50), IDLE_N (idle connections, 1000), SERVER_CPU (0),
# CLIENT_CPU (1), NGINX (0), NGINX_PORT (18443), SUBJECTS ("httpcore
# nethttp"; nethttp must be among them, the ratios are against it).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-3}
ROUNDS=${ROUNDS:-7}
CONNS=${CONNS:-50}
IDLE_N=${IDLE_N:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX:-0}
NGINX_PORT=${NGINX_PORT:-18443}
SUBJECTS=${SUBJECTS:-httpcore nethttp} # also: xnethttp (net/http with x/net's http2)
if [ "$NGINX" = 1 ]; then
	command -v nginx >/dev/null || { echo "core.sh: NGINX=1 but nginx not found (Debian: nginx)" >&2; exit 1; }
	SUBJECTS="$SUBJECTS nginx"
fi

for tool in wrk h2load taskset; do
	command -v "$tool" >/dev/null || { echo "core.sh: $tool not found (Debian: wrk, nghttp2-client, util-linux)" >&2; exit 1; }
done

work=$(mktemp -d)
declare -A PIDS ADDRS
IDLE_PID=""
cleanup() {
	[ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
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
	PIDS[nginx]=$!
	ADDRS[nginx]=127.0.0.1:$NGINX_PORT
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
	PIDS[$1]=$!
	for _ in $(seq 100); do
		grep -q '^ready' "$work/$1.out" 2>/dev/null && break
		sleep 0.05
	done
	ADDRS[$1]=$(awk '/^ready/ {print $2}' "$work/$1.out")
	[ -n "${ADDRS[$1]}" ] || { cat "$work/$1.out"; exit 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/${PIDS[$1]}/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/${PIDS[$1]}/status"; }
gc() { kill -USR1 "${PIDS[$1]}"; sleep 1; } # Go: collect and return memory; nginx: reopen logs

measure_idle() { # mode [idle|idleh2]; prints bytes per idle connection
	gc "$1"
	local before after
	before=$(rss_kb "$1")
	taskset -c "$CLIENT_CPU" "$work/server" -mode "${2:-idle}" -addr "${ADDRS[$1]}" -n "$IDLE_N" >"$work/idle.out" 2>&1 &
	IDLE_PID=$!
	for _ in $(seq 600); do
		grep -q '^idle' "$work/idle.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '^idle' "$work/idle.out" || { cat "$work/idle.out" >&2; exit 1; }
	sleep 1
	gc "$1"
	after=$(rss_kb "$1")
	kill "$IDLE_PID" 2>/dev/null || true
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
	sleep 1
	echo $(( (after - before) * 1024 / IDLE_N ))
}

per_req() { # ticks requests; prints us per request
	awk -v d="$1" -v clk="$CLK" -v n="$2" 'BEGIN {if (n > 0) printf "%.2f\n", d * 1e6 / clk / n; else print 0}'
}

measure_wrk() { # mode seconds; prints us per request and requests
	local t0 t1 reqs
	t0=$(cpu_ticks "$1")
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${2}s" "https://${ADDRS[$1]}/" >"$work/wrk.out"
	t1=$(cpu_ticks "$1")
	reqs=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	echo "$(per_req $((t1 - t0)) "$reqs") $reqs"
}

measure_h2() { # mode seconds; prints us per request and requests
	local t0 t1 reqs
	t0=$(cpu_ticks "$1")
	taskset -c "$CLIENT_CPU" h2load -c16 -m10 -D "$2" "https://${ADDRS[$1]}/" >"$work/h2.out" 2>&1
	t1=$(cpu_ticks "$1")
	reqs=$(awk '/^requests:/ {print $8}' "$work/h2.out")
	[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$work/h2.out" >&2; echo "0 0"; return; }
	echo "$(per_req $((t1 - t0)) "$reqs") $reqs"
}

echo "core.sh: server on CPU $SERVER_CPU, load on CPU $CLIENT_CPU, ${DUR}s runs, $ROUNDS rounds, $(nproc) CPUs, $(go version | awk '{print $3}')"
results="$work/results" # lines: mode kind value round
: >"$results"
for mode in $SUBJECTS; do
	start_server "$mode"
	idle_b=$(measure_idle "$mode")
	echo "$mode idle $idle_b 0" >>"$results"
	printf 'idle      %-9s %6s B/conn\n' "$mode" "$idle_b"
	idle_b=$(measure_idle "$mode" idleh2)
	echo "$mode idleh2 $idle_b 0" >>"$results"
	printf 'idle h2   %-9s %6s B/conn\n' "$mode" "$idle_b"
	measure_wrk "$mode" 1 >/dev/null # warm-up
	measure_h2 "$mode" 1 >/dev/null
done
for round in $(seq "$ROUNDS"); do
	order=$SUBJECTS
	[ $((round % 2)) -eq 0 ] && order=$(echo "$SUBJECTS" | tr ' ' '\n' | tac | paste -sd' ')
	line="round $round"
	for kind in h1 h2; do
		for mode in $order; do
			if [ "$kind" = h1 ]; then read -r us n < <(measure_wrk "$mode" "$DUR"); else read -r us n < <(measure_h2 "$mode" "$DUR"); fi
			echo "$mode $kind $us $round" >>"$results"
			line="$line  $kind $mode $us"
		done
	done
	echo "$line"
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2}'; }
col() { awk -v m="$1" -v k="$2" '$1 == m && $2 == k {print $3}' "$results" | median; }
# ratios MODE KIND: MODE / net/http per round, one per line.
ratios() {
	awk -v m="$1" -v k="$2" '$2 == k {v[$1, $4] = $3; r[$4] = 1}
		END {for (i in r) if (v["nethttp", i] > 0) printf "%.3f\n", v[m, i] / v["nethttp", i]}' "$results"
}
echo
printf '%-9s %18s %18s %20s %20s\n' server "HTTPS keep-alive" "h2 (16x10)" "idle TLS conn" "idle h2 conn"
for mode in $SUBJECTS; do
	printf '%-9s %13s us/req %13s us/req %15s B/conn %15s B/conn\n' "$mode" "$(col $mode h1)" "$(col $mode h2)" "$(col $mode idle)" "$(col $mode idleh2)"
done
for mode in $SUBJECTS; do
	[ "$mode" = nethttp ] && continue
	printf '%-9s %16.2fx %16.2fx %18.2fx %18.2fx   (/ net/http: median of per-round ratios)\n' \
		"$mode" "$(ratios $mode h1 | median)" "$(ratios $mode h2 | median)" "$(ratios $mode idle | median)" "$(ratios $mode idleh2 | median)"
	echo "  per-round h1 ratios: $(ratios $mode h1 | sort -n | paste -sd' ')"
	echo "  per-round h2 ratios: $(ratios $mode h2 | sort -n | paste -sd' ')"
done
