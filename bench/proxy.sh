#!/usr/bin/env bash
# bench/proxy.sh: the reverse proxy's load benchmark. HTTPS keep-alive
# clients (wrk) -> an edge -> one plain HTTP/1.1 upstream on loopback (nginx
# answering "hello", and serving 1 MiB and 64 MiB files). The edges, side by
# side in one run, all with the same certificate:
#   nginx     proxy_pass to an upstream block with keepalive 64
#   nethttp   net/http's httputil.ReverseProxy, MaxIdleConnsPerHost 256
#             (bench/server -mode revproxy)
#   caddy     Caddy's reverse_proxy (Debian: caddy)
#   tlsedge   the tlsedge binary, --mount /=http://127.0.0.1:UPSTREAM
# Every edge is pinned to SERVER_CPU; the upstream nginx and the load
# generator share CLIENT_CPU, so the upstream never takes the edge's core.
#
# For each edge it reports:
#   - edge CPU time (utime+stime from /proc/PID/stat) per proxied request
#     under wrk with CONNS (64) keep-alive connections, "hello" answers,
#   - edge CPU time per MiB with 1 MiB answers (wrk, BIG_CONNS connections),
#   - edge CPU time per proxied request from h2 clients (h2load, H2_CONNS
#     connections of H2_STREAMS streams each, "hello" answers): the edge's
#     h2 engine in front of the same HTTP/1.1 upstream,
#   - memory per request in flight: VmRSS growth with STALL_N clients that
#     each ask for 64 MiB and read nothing (every edge then holds its
#     requests under back-pressure), divided by STALL_N; measured first, on
#     fresh processes (so that a Go heap has no room left over from an
#     earlier run to hide the growth in), without forcing a GC,
#   - upstream connections: the upstream's accepted connections during each
#     "hello" run (nginx stub_status), the connections established to it in
#     the middle of the run, and the TIME_WAIT sockets on its port that
#     the run added (ss). Under CONNS keep-alive clients an edge that pools
#     properly opens at most CONNS connections and then none.
#
# As in core.sh, this machine class is noisy: every edge runs at once, the
# load runs are short and alternate between edges round by round, and each
# ratio (to nginx) is the median of the per-round ratios. A run that
# completed no request (a stall of the shared machine) is left out.
#
# Environment: DUR (seconds per run, 3), ROUNDS (5), CONNS (64), BIG_CONNS
# (16), H2_CONNS (16), H2_STREAMS (10), STALL_N (200), SERVER_CPU (0), CLIENT_CPU (1), SUBJECTS ("nginx
# nethttp caddy tlsedge"; nginx must be among them), BASE_PORT (18440),
# TLSEDGE0 (a tlsedge binary built from another commit: it joins as the
# subject tlsedge0, for a before/after comparison in the same run).
# Needs wrk, h2load, nginx (with stub_status and http2), caddy, ss and
# taskset.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-3}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-64}
BIG_CONNS=${BIG_CONNS:-16}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-10}
STALL_N=${STALL_N:-200}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SUBJECTS=${SUBJECTS:-nginx nethttp caddy tlsedge}
BASE_PORT=${BASE_PORT:-18440}
UP_PORT=$((BASE_PORT + 0))
STATUS_PORT=$((BASE_PORT + 1))
declare -A PORTS=([nginx]=$((BASE_PORT + 2)) [nethttp]=$((BASE_PORT + 3)) [caddy]=$((BASE_PORT + 4)) [tlsedge]=$((BASE_PORT + 5)) [tlsedge0]=$((BASE_PORT + 6)))
if [ -n "${TLSEDGE0:-}" ]; then
	SUBJECTS="$SUBJECTS tlsedge0"
fi

for tool in wrk h2load nginx ss taskset; do
	command -v "$tool" >/dev/null || { echo "proxy.sh: $tool not found (Debian: wrk, nghttp2-client, nginx, iproute2, util-linux)" >&2; exit 1; }
done
case " $SUBJECTS " in *" caddy "*) command -v caddy >/dev/null || { echo "proxy.sh: caddy not found (Debian: caddy; or leave it out of SUBJECTS)" >&2; exit 1; } ;; esac
case " $SUBJECTS " in *" nginx "*) ;; *) echo "proxy.sh: nginx must be among SUBJECTS: the ratios are against it" >&2; exit 1 ;; esac

work=$(mktemp -d)
declare -A PIDS
UP_PID=""
STALL_PID=""
cleanup() {
	[ -n "$STALL_PID" ] && kill "$STALL_PID" 2>/dev/null || true
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	[ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/server" ./bench/server
go build -o "$work/tlsedge" .
"$work/server" -gencert "$work"
CLK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true

wait_port() { # port name
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
		sleep 0.05
	done
	echo "proxy.sh: $2 did not listen on $1" >&2
	cat "$work/$2.out" >&2 2>/dev/null || true
	exit 1
}

nginx_common() { # dir: the http-level settings both nginx processes share
	cat <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 65536; }
EOF
}

nginx_temp() { # dir
	cat <<EOF
	access_log off;
	server_tokens off;
	client_body_temp_path $1/body;
	proxy_temp_path $1/proxy;
	fastcgi_temp_path $1/fastcgi;
	uwsgi_temp_path $1/uwsgi;
	scgi_temp_path $1/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 120s;
EOF
}

start_upstream() {
	local d=$work/up
	mkdir -p "$d" "$work/www"
	head -c $((1 << 20)) /dev/zero | tr '\0' 'x' >"$work/www/big"
	head -c $((64 << 20)) /dev/zero | tr '\0' 'x' >"$work/www/huge"
	{
		nginx_common "$d"
		echo "http {"
		nginx_temp "$d"
		cat <<EOF
	sendfile on;
	server {
		listen 127.0.0.1:$UP_PORT;
		location = / { default_type text/plain; return 200 "hello"; }
		location / { root $work/www; default_type application/octet-stream; }
	}
	server {
		listen 127.0.0.1:$STATUS_PORT;
		location / { stub_status; }
	}
}
EOF
	} >"$d/nginx.conf"
	taskset -c "$CLIENT_CPU" nginx -p "$d" -c "$d/nginx.conf" >"$work/up.out" 2>&1 &
	UP_PID=$!
	wait_port "$UP_PORT" up
}

start_nginx() {
	local d=$work/nginx
	mkdir -p "$d"
	{
		nginx_common "$d"
		echo "http {"
		nginx_temp "$d"
		cat <<EOF
	ssl_certificate $work/cert.pem;
	ssl_certificate_key $work/key.pem;
	ssl_protocols TLSv1.2 TLSv1.3;
	upstream up {
		server 127.0.0.1:$UP_PORT;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:${PORTS[nginx]} ssl http2;
		location / {
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffer_size 32k;
			proxy_buffers 4 32k;
			proxy_max_temp_file_size 0;
		}
	}
}
EOF
	} >"$d/nginx.conf"
	taskset -c "$SERVER_CPU" nginx -p "$d" -c "$d/nginx.conf" >"$work/nginx.out" 2>&1 &
	PIDS[nginx]=$!
}

start_caddy() {
	mkdir -p "$work/caddy"
	cat >"$work/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https disable_redirects
	storage file_system $work/caddy/data
}
https://127.0.0.1:${PORTS[caddy]} {
	tls $work/cert.pem $work/key.pem
	reverse_proxy 127.0.0.1:$UP_PORT
}
EOF
	HOME=$work/caddy XDG_DATA_HOME=$work/caddy XDG_CONFIG_HOME=$work/caddy \
		taskset -c "$SERVER_CPU" caddy run --adapter caddyfile --config "$work/caddy/Caddyfile" >"$work/caddy.out" 2>&1 &
	PIDS[caddy]=$!
}

start_edge() { # subject
	case $1 in
	nginx) start_nginx ;;
	caddy) start_caddy ;;
	nethttp)
		taskset -c "$SERVER_CPU" "$work/server" -mode revproxy -upstream "http://127.0.0.1:$UP_PORT" \
			-addr "127.0.0.1:${PORTS[nethttp]}" -cert "$work/cert.pem" -key "$work/key.pem" >"$work/nethttp.out" 2>&1 &
		PIDS[nethttp]=$!
		;;
	tlsedge | tlsedge0)
		local bin=$work/tlsedge
		[ "$1" = tlsedge0 ] && bin=$TLSEDGE0
		taskset -c "$SERVER_CPU" "$bin" --data-dir "$work/$1-data" --log-level warn --ssl-module builtin \
			--socket-port "${PORTS[$1]}" --ssl-certificate "$work/cert.pem" --ssl-private-key "$work/key.pem" \
			--mount "/=http://127.0.0.1:$UP_PORT" >"$work/$1.out" 2>&1 &
		PIDS[$1]=$!
		;;
	*) echo "proxy.sh: unknown subject $1" >&2; exit 1 ;;
	esac
	wait_port "${PORTS[$1]}" "$1"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/${PIDS[$1]}/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/${PIDS[$1]}/status"; }
up_accepts() { # the upstream's accepted connections so far, less this query's own
	local s
	s=$(exec 3<>"/dev/tcp/127.0.0.1/$STATUS_PORT"; printf 'GET / HTTP/1.0\r\nHost: s\r\n\r\n' >&3; cat <&3)
	echo "$s" | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ *$/ {print $1; exit}'
}
up_established() { # subject: its connections to the upstream
	ss -Htnp state established "( dport = :$UP_PORT )" | grep -c "pid=${PIDS[$1]}," || true
}
up_timewait() { ss -Htn state time-wait "( dport = :$UP_PORT or sport = :$UP_PORT )" | wc -l; }

run_wrk() { # subject path conns seconds; prints requests
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$3" -d"${4}s" "https://127.0.0.1:${PORTS[$1]}$2" >"$work/wrk.out"
	if grep -q 'Non-2xx\|Socket errors' "$work/wrk.out"; then
		echo "proxy.sh: $1 $2: errors under load" >&2
		cat "$work/wrk.out" >&2
	fi
	awk '/requests in/ {print $1}' "$work/wrk.out"
}

run_h2load() { # subject seconds; prints requests answered 2xx
	taskset -c "$CLIENT_CPU" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D "$2" "https://127.0.0.1:${PORTS[$1]}/" >"$work/h2load.out" 2>&1 || true
	if ! grep -q 'status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$work/h2load.out"; then
		echo "proxy.sh: $1 h2: errors under load" >&2
		grep -E 'requests:|status codes:' "$work/h2load.out" >&2 || cat "$work/h2load.out" >&2
	fi
	awk '/^requests:/ {print $8}' "$work/h2load.out"
}

# measure SUBJECT KIND: prints "us-per-unit requests [accepted established timewait]"
measure() {
	local t0 t1 n a0 a1 est tw
	case $2 in
	hello)
		a0=$(up_accepts)
		tw=$(up_timewait)
		t0=$(cpu_ticks "$1")
		(sleep "$(awk -v d="$DUR" 'BEGIN {print d / 2}')"; up_established "$1" >"$work/est") &
		n=$(run_wrk "$1" / "$CONNS" "$DUR")
		t1=$(cpu_ticks "$1")
		wait
		a1=$(up_accepts)
		est=$(cat "$work/est")
		tw=$(( $(up_timewait) - tw ))
		[ "$tw" -lt 0 ] && tw=0
		awk -v d=$((t1 - t0)) -v clk="$CLK" -v n="$n" -v a=$((a1 - a0 - 1)) -v e="$est" -v tw="$tw" \
			'BEGIN {printf "%.2f %d %d %d %d\n", (n > 0 ? d * 1e6 / clk / n : 0), n, a, e, tw}'
		;;
	h2)
		t0=$(cpu_ticks "$1")
		n=$(run_h2load "$1" "$DUR")
		t1=$(cpu_ticks "$1")
		awk -v d=$((t1 - t0)) -v clk="$CLK" -v n="${n:-0}" 'BEGIN {printf "%.2f %d\n", (n > 0 ? d * 1e6 / clk / n : 0), n}'
		;;
	big)
		t0=$(cpu_ticks "$1")
		n=$(run_wrk "$1" /big "$BIG_CONNS" "$DUR")
		t1=$(cpu_ticks "$1")
		awk -v d=$((t1 - t0)) -v clk="$CLK" -v n="$n" 'BEGIN {printf "%.1f %d\n", (n > 0 ? d * 1e6 / clk / n : 0), n}'
		;;
	esac
}

measure_stall() { # subject; prints bytes per request in flight and upstream connections held
	local before after est
	before=$(rss_kb "$1")
	taskset -c "$CLIENT_CPU" "$work/server" -mode stall -addr "127.0.0.1:${PORTS[$1]}" -path /huge -n "$STALL_N" >"$work/stall.out" 2>&1 &
	STALL_PID=$!
	for _ in $(seq 600); do
		grep -q '^stalled' "$work/stall.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '^stalled' "$work/stall.out" || { cat "$work/stall.out" >&2; exit 1; }
	sleep 2
	after=$(rss_kb "$1")
	est=$(up_established "$1")
	kill "$STALL_PID" 2>/dev/null || true
	wait "$STALL_PID" 2>/dev/null || true
	STALL_PID=""
	sleep 2
	echo "$(( (after - before) * 1024 / STALL_N )) $est"
}

echo "proxy.sh: edges on CPU $SERVER_CPU, upstream and load on CPU $CLIENT_CPU, ${DUR}s runs, $ROUNDS rounds, $CONNS conns (1 MiB: $BIG_CONNS), $(nproc) CPUs, $(go version | awk '{print $3}'), $(nginx -v 2>&1 | awk '{print $3}')$(command -v caddy >/dev/null && echo ", caddy $(caddy version | awk '{print $1}')")"
start_upstream
results="$work/results" # lines: subject kind value round [extra...]
: >"$results"
for s in $SUBJECTS; do
	start_edge "$s"
	read -r b est < <(measure_stall "$s")
	echo "$s stall $b 0" >>"$results"
	printf 'in flight %-8s %8s B/request (%d upstream connections held)\n' "$s" "$b" "$est"
	run_wrk "$s" / "$CONNS" 1 >/dev/null # warm-up: pools filled, heap grown
	run_wrk "$s" /big "$BIG_CONNS" 1 >/dev/null
	run_h2load "$s" 1 >/dev/null
done
for round in $(seq "$ROUNDS"); do
	order=$SUBJECTS
	[ $((round % 2)) -eq 0 ] && order=$(echo "$SUBJECTS" | tr ' ' '\n' | tac | paste -sd' ')
	line="round $round"
	for kind in hello big h2; do
		for s in $order; do
			read -r us n rest < <(measure "$s" "$kind")
			echo "$s $kind $us $round $n $rest" >>"$results"
			line="$line  $kind $s $us"
		done
	done
	echo "$line"
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2}'; }
col() { awk -v m="$1" -v k="$2" -v f="${3:-3}" '$1 == m && $2 == k && ($2 == "stall" || $3 > 0) {print $f}' "$results" | median; }
maxcol() { awk -v m="$1" -v k="$2" -v f="$3" '$1 == m && $2 == k && $f > x {x = $f} END {print x + 0}' "$results"; }
ratios() { # subject kind: subject / nginx per round, one per line
	awk -v m="$1" -v k="$2" '$2 == k {v[$1, $4] = $3; r[$4] = 1}
		END {for (i in r) if (v["nginx", i] > 0 && v[m, i] > 0) printf "%.3f\n", v[m, i] / v["nginx", i]}' "$results"
}
echo
printf '%-8s %14s %14s %14s %16s   %s\n' edge "hello us/req" "1 MiB us/MiB" "h2 us/req" "in flight B/req" "upstream connections in the hello runs"
for s in $SUBJECTS; do
	printf '%-8s %14s %14s %14s %16s   opened per 1000 requests %s (max %s in a run), established %s, TIME_WAIT added max %s\n' \
		"$s" "$(col $s hello)" "$(col $s big)" "$(col $s h2)" "$(col $s stall)" \
		"$(awk -v m="$s" '$1 == m && $2 == "hello" && $5 > 0 {printf "%.2f\n", $6 * 1000 / $5}' "$results" | median)" \
		"$(maxcol $s hello 6)" "$(col $s hello 7)" "$(maxcol $s hello 8)"
done
echo "ratios to nginx (medians of per-round ratios):"
for s in $SUBJECTS; do
	[ "$s" = nginx ] && continue
	printf '%-8s hello %.2fx  1 MiB %.2fx  h2 %.2fx\n' "$s" "$(ratios $s hello | median)" "$(ratios $s big | median)" "$(ratios $s h2 | median)"
	echo "  per-round hello: $(ratios $s hello | sort -n | paste -sd' ')"
	echo "  per-round 1 MiB: $(ratios $s big | sort -n | paste -sd' ')"
	echo "  per-round h2:    $(ratios $s h2 | sort -n | paste -sd' ')"
done
