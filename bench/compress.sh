#!/usr/bin/env bash
# bench/compress.sh: response compression, tlsedge next to nginx's gzip (the
# Debian package), in one run: server CPU per MiB of body compressed.
#
#   bench/compress.sh /path/to/tlsedge [seconds]
#
# Both servers serve the same JSON file (about 256 KiB) over plain HTTP (so the
# figures are compression and serving, not TLS) to the same load: wrk, one
# thread, CONNS keep-alive connections (default 8), for the given seconds
# (default 8) after a 2 s warm-up, rounds alternating between subjects
# (ROUNDS, default 3; the median of each subject's rounds is printed).
# Server CPU is the user+system time of the server's processes (nginx: one
# master, one worker) read from /proc around the measured run, divided by
# the MiB of uncompressed body served (requests x 256 KiB): "cpu-ms/MiB" is
# the cost of compressing one MiB, plus serving it.
#
# Subjects: each server without compression (identity: the serving cost),
# nginx gzip at levels 1 and 5 (gzip_comp_level; 1 is nginx's default),
# tlsedge gzip at compress_level fastest (gzip 1) and default (gzip 5), and
# tlsedge zstd at default. "ratio" is the compressed size over the
# original, as curl receives it.
# Needs: wrk, nginx, curl, python3.
set -euo pipefail

bin=${1:?usage: bench/compress.sh /path/to/tlsedge [seconds]}
secs=${2:-8}
conns=${CONNS:-8}
rounds=${ROUNDS:-3}
nginx=${NGINX:-/usr/sbin/nginx}
for need in wrk curl python3 "$nginx"; do
	command -v "$need" >/dev/null || { echo "missing $need: apt-get install -y wrk nginx curl python3" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }

work=$(mktemp -d /tmp/tlsedge-compress.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ "${KEEP:-0}" = 1 ] && echo "work directory kept: $work" || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www"
chmod 0755 "$work" "$work/www"
# 256 KiB of JSON records: ids, names, repeated keys, some variety.
python3 - "$work/www/data.json" <<'PY'
import json, random, sys
random.seed(1)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
recs, out = [], ""
i = 0
while len(out) < 262144:
    recs.append({"id": i, "name": " ".join(random.choice(words) for _ in range(3)),
                 "score": round(random.random() * 1000, 3), "active": i % 3 == 0,
                 "tags": random.sample(words, 2)})
    i += 1
    if i % 50 == 0:
        out = json.dumps(recs)
open(sys.argv[1], "w").write(out)
PY
chmod 0644 "$work/www/data.json"
size=$(stat -c %s "$work/www/data.json")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tck=$(getconf CLK_TCK)
cpu_ticks() {
	local sum=0 p f
	for p in "$@"; do
		f=$(sed 's/.*) //' "/proc/$p/stat")
		set -- $f
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}
wait_up() {
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$1/data.json" && return 0
		sleep 0.1
	done
	echo "server on port $1 did not come up" >&2
	return 1
}

# start_nginx NAME LEVEL (0: gzip off)
start_nginx() {
	local name=$1 level=$2 port
	port=$(free_port)
	mkdir -p "$work/$name"
	local gz="gzip off;"
	[ "$level" -gt 0 ] && gz="gzip on; gzip_comp_level $level; gzip_types application/json; gzip_min_length 1024; gzip_vary on;"
	cat >"$work/$name/nginx.conf" <<NGX
worker_processes 1;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
events { worker_connections 1024; }
http {
	include /etc/nginx/mime.types;
	access_log off;
	sendfile on;
	keepalive_requests 100000;
	client_body_temp_path $work/$name; proxy_temp_path $work/$name; fastcgi_temp_path $work/$name;
	uwsgi_temp_path $work/$name; scgi_temp_path $work/$name;
	$gz
	server { listen 127.0.0.1:$port; root $work/www; }
}
NGX
	"$nginx" -p "$work/$name" -c "$work/$name/nginx.conf" -g 'daemon off;' 2>"$work/$name/stderr" &
	pids+=("$!")
	echo "$!" >"$work/$name/pid"
	echo "$port" >"$work/$name/port"
	wait_up "$port" || { cat "$work/$name/stderr" >&2; exit 1; }
}

# start_tlsedge NAME ARGS...
start_tlsedge() {
	local name=$1 port
	shift
	port=$(free_port)
	mkdir -p "$work/$name"
	"$bin" serve --socket-host 127.0.0.1 --socket-port "$port" --ssl-module none --data-dir "$work/$name" \
		--mount "/=dir:$work/www" "$@" >"$work/$name/log" 2>&1 &
	pids+=("$!")
	echo "$!" >"$work/$name/pid"
	echo "$port" >"$work/$name/port"
	wait_up "$port" || { cat "$work/$name/log" >&2; exit 1; }
}

subject_pids() {
	local p
	p=$(cat "$work/$1/pid")
	echo "$p $(pgrep -P "$p" | tr '\n' ' ')"
}

# measure NAME ENCODING: prints cpu-ms per MiB of body served.
measure() {
	local name=$1 enc=$2 port ps before after out reqs hdr=()
	port=$(cat "$work/$name/port")
	[ "$enc" != identity ] && hdr=(-H "Accept-Encoding: $enc")
	wrk -t1 -c"$conns" -d2s "${hdr[@]}" "http://127.0.0.1:$port/data.json" >/dev/null
	ps=$(subject_pids "$name")
	before=$(cpu_ticks $ps)
	out=$(wrk -t1 -c"$conns" -d"${secs}s" "${hdr[@]}" "http://127.0.0.1:$port/data.json")
	after=$(cpu_ticks $ps)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	python3 -c "import sys; r,t,tck,sz=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]); mib=r*sz/1048576; print(f'{t/tck*1e3/max(mib,1e-9):.2f} {r/$secs:.0f}')" "$reqs" "$((after - before))" "$tck" "$size"
}

ratio() {
	local port n
	port=$(cat "$work/$1/port")
	[ "$2" = identity ] && { echo 1.000; return; }
	n=$(curl -s -H "Accept-Encoding: $2" "http://127.0.0.1:$port/data.json" | wc -c)
	python3 -c "print(f'{$n/$size:.3f}')"
}

start_nginx ngx-identity 0
start_nginx ngx-gzip1 1
start_nginx ngx-gzip5 5
start_tlsedge tle-identity
start_tlsedge tle-gzip1 --compress / --compress-encodings gzip --compress-level fastest
start_tlsedge tle-gzip5 --compress / --compress-encodings gzip --compress-level default
start_tlsedge tle-zstd --compress / --compress-encodings zstd --compress-level default

subjects=("ngx-identity identity" "tle-identity identity" "ngx-gzip1 gzip" "tle-gzip1 gzip" "ngx-gzip5 gzip" "tle-gzip5 gzip" "tle-zstd zstd")
declare -A res reqs
for r in $(seq "$rounds"); do
	for s in "${subjects[@]}"; do
		set -- $s
		read -r cpu rps < <(measure "$1" "$2")
		res[$1]="${res[$1]:-} $cpu"
		reqs[$1]="${reqs[$1]:-} $rps"
	done
done

echo "256 KiB JSON over plain HTTP: wrk -t1 -c$conns, ${secs}s x $rounds rounds per subject, $(nproc) CPUs, $(uname -r)"
echo "tlsedge: $("$bin" version 2>/dev/null | head -1 || echo "$bin")"
echo "nginx:   $("$nginx" -v 2>&1)"
echo
printf '%-13s %7s %9s %12s   %s\n' subject ratio req/s cpu-ms/MiB "rounds (cpu-ms/MiB)"
for s in "${subjects[@]}"; do
	set -- $s
	python3 - "$1" "$(ratio "$1" "$2")" "${res[$1]}" "${reqs[$1]}" <<'PY'
import statistics, sys
name, ratio, cpus, rps = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
print(f"{name:<13} {ratio:>7} {statistics.median(rps):>9.0f} {statistics.median(cpus):>12.2f}   {' '.join(f'{c:.2f}' for c in cpus)}")
PY
done
echo
echo "cpu-ms/MiB: server CPU per MiB of uncompressed body served (compressing it, and serving it)."
