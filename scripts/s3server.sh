#!/usr/bin/env bash
# A real, SigV4-verifying S3 server for the tests: a single-node Ceph (one mon, one OSD on
# memstore, one RADOS Gateway) from Debian's packages, bound to 127.0.0.1 only.
#
#   scripts/s3server.sh start    DIR   create (first time) or restart the server; prints the env block
#   scripts/s3server.sh stop     DIR   stop radosgw, osd, mon (SIGTERM; objects are kept in DIR)
#   scripts/s3server.sh status   DIR   exit 0 when the gateway answers, 3 otherwise
#   scripts/s3server.sh env      DIR   print "export S3_ENDPOINT=... S3_ACCESS_KEY=..." lines
#   scripts/s3server.sh mkbucket DIR NAME   create a bucket (signed PUT; idempotent)
#   scripts/s3server.sh wipe     DIR   stop (SIGKILL) and remove DIR
#
# Ports come from the environment on the first start and are then kept in DIR/ports:
#   S3_RGW_PORT (7480), S3_MON_PORT (6789, msgr v1), S3_MON_PORT2 (3300, msgr v2).
# The S3 user has fixed test keys (S3_ACCESS_KEY / S3_SECRET_KEY override them).
# Needs: radosgw ceph-mon ceph-osd ceph-common curl (scripts/deps.sh installs them).
# RADOS traffic uses "auth none"; the gateway still checks every S3 signature against its
# user's keys. Start-up takes ~3 s on an empty DIR, idle memory ~110 MiB.
set -euo pipefail

usage() {
	sed -n '5,10s/^# \{0,1\}//p' "$0" >&2
	exit 2
}
(($# >= 2)) || usage
cmd=$1
D=$(realpath -m "$2")
shift 2

# ---------------------------------------------------------------- settings
if [[ -r "$D/ports" ]]; then
	# shellcheck disable=SC1091
	source "$D/ports"
fi
RGW_PORT=${RGW_PORT:-${S3_RGW_PORT:-7480}}
MON_PORT=${MON_PORT:-${S3_MON_PORT:-6789}}
MON_PORT2=${MON_PORT2:-${S3_MON_PORT2:-3300}}
S3_UID=${S3_UID:-cmltest}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-CMLTESTACCESSKEY0001}
S3_SECRET_KEY=${S3_SECRET_KEY:-cmltestsecretkey000000000000000000000001}
S3_REGION=${S3_REGION:-us-east-1}
FSID=6c1f3d2a-7b4e-4f0e-9a6d-2e8c5b1a9f37
CONF=$D/ceph.conf
ENDPOINT="http://127.0.0.1:$RGW_PORT"

log() { echo "[s3server.sh $(date +%T)] $*" >&2; }
die() {
	log "ERROR: $*"
	local f
	for f in "$D"/log/*.log; do
		[[ -f "$f" ]] || continue
		echo "--- last lines of $f" >&2
		tail -n 8 "$f" >&2
	done
	exit 1
}
ceph_() { timeout 60 ceph -c "$CONF" --connect-timeout 30 "$@"; }
rgwadmin() { timeout 120 radosgw-admin -c "$CONF" -n client.rgw.a "$@"; }

# a live process (a killed daemon may linger as a zombie until it is reaped)
running() { [[ -r "/proc/$1/stat" ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
alive() { [[ -f "$D/run/$1.pid" ]] && running "$(<"$D/run/$1.pid")"; }
rgw_up() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; }

need_packages() {
	local c missing=()
	for c in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	if ((${#missing[@]})); then
		log "missing commands: ${missing[*]} (apt-get install radosgw ceph-mon ceph-osd ceph-common curl)"
		exit 4
	fi
}

print_env() {
	printf 'export S3_ENDPOINT=%q\n' "$ENDPOINT"
	printf 'export S3_REGION=%q\n' "$S3_REGION"
	printf 'export S3_ACCESS_KEY=%q\n' "$S3_ACCESS_KEY"
	printf 'export S3_SECRET_KEY=%q\n' "$S3_SECRET_KEY"
}

# ---------------------------------------------------------------- stop
# radosgw first, then the OSD (a clean stop writes memstore's objects to DIR/osd), then the mon
stop() {
	local sig=${1:-TERM} n f pid s
	for n in client.rgw.a osd.0 mon.a; do
		f=$D/run/$n.pid
		[[ -f "$f" ]] || continue
		pid=$(<"$f")
		if running "$pid"; then
			s=$sig
			kill -"$s" "$pid" 2>/dev/null || true
			for _ in $(seq 1 300); do
				running "$pid" || break
				sleep 0.1
			done
			if running "$pid"; then
				log "$n ($pid) did not stop within 30 s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				s=KILL
			fi
			if [[ "$n" == osd.0 && "$s" == TERM ]]; then
				touch "$D/osd/.clean"
			fi
		fi
		rm -f "$f"
	done
}

# ---------------------------------------------------------------- start
write_conf() {
	mkdir -p "$D"/{mon,osd,run,log,rgw,crash}
	cat >"$D/ports" <<EOF
RGW_PORT=$RGW_PORT
MON_PORT=$MON_PORT
MON_PORT2=$MON_PORT2
EOF
	cat >"$CONF" <<EOF
# written by scripts/s3server.sh
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv4 = true
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# daemon clients (radosgw) default to "secure", which "auth none" cannot do: they would hang
ms_mon_client_mode = crc secure
run_dir = $D/run
admin_socket = $D/run/\$name.asok
pid_file = $D/run/\$name.pid
log_file = $D/log/\$name.log
crash_dir = $D/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
mon_data_avail_crit = 0

[mon.a]
mon_data = $D/mon
# commit osdmap changes quickly: the gateway's first start creates ~7 pools
paxos_propose_interval = 0.1

[osd.0]
osd_data = $D/osd
osd_objectstore = memstore
memstore_device_bytes = 1073741824
# memstore writes its objects to osd_data only on a clean umount, which fast shutdown skips
osd_fast_shutdown = false

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $D/rgw
rgw_thread_pool_size = 16
EOF
}

start() {
	need_packages
	if alive mon.a && alive osd.0 && alive client.rgw.a && rgw_up; then
		log "already running at $ENDPOINT"
		print_env
		return 0
	fi
	# An OSD that did not stop cleanly lost its memstore objects: start from scratch.
	dirty() { [[ -f "$D/osd/.mkfs_done" && ! -f "$D/osd/.clean" ]] && ! alive osd.0; }
	if dirty; then
		stop KILL
		log "the OSD was not stopped cleanly: its objects are lost, recreating the cluster"
		rm -rf "${D:?}"/{mon,osd,run,log,rgw,crash,monmap}
	else
		stop
	fi
	write_conf

	if [[ ! -f "$D/mon/.mkfs_done" ]]; then
		rm -rf "$D/mon"
		mkdir -p "$D/mon"
		monmaptool --create --clobber --fsid "$FSID" \
			--addv a "[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
		ceph-mon -c "$CONF" -i a --mkfs --monmap "$D/monmap" 2>>"$D/log/mon-mkfs.log" || die "ceph-mon --mkfs failed"
		touch "$D/mon/.mkfs_done"
	fi
	log "starting mon (127.0.0.1:$MON_PORT2, :$MON_PORT)"
	ceph-mon -c "$CONF" -i a 2>>"$D/log/mon-stderr.log" || die "ceph-mon failed to start"
	ceph_ mon stat >/dev/null 2>&1 || die "the mon does not answer"

	if [[ ! -f "$D/osd/.mkfs_done" ]]; then
		local uuid
		rm -rf "$D/osd"
		mkdir -p "$D/osd"
		uuid=$(cat /proc/sys/kernel/random/uuid)
		ceph_ osd new "$uuid" 0 >/dev/null 2>&1 || die "ceph osd new failed"
		ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" 2>>"$D/log/osd-mkfs.log" || die "ceph-osd --mkfs failed"
		touch "$D/osd/.mkfs_done" "$D/osd/.clean"
	fi
	log "starting osd (memstore)"
	rm -f "$D/osd/.clean"
	ceph-osd -c "$CONF" -i 0 2>>"$D/log/osd-stderr.log" || die "ceph-osd failed to start"
	local ok=""
	for _ in $(seq 1 120); do
		if ceph_ osd dump 2>/dev/null | grep -q '^osd.0 up'; then
			ok=1
			break
		fi
		sleep 0.25
	done
	[[ -n "$ok" ]] || die "osd.0 is not up after 30 s"

	# the first radosgw-admin call also creates the realm, the zone and the gateway's pools
	if ! rgwadmin user info --uid="$S3_UID" >/dev/null 2>&1; then
		log "creating the S3 user $S3_UID"
		rgwadmin user create --uid="$S3_UID" --display-name="cinematic_ml tests" \
			--access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null 2>>"$D/log/rgwadmin.log" ||
			die "radosgw-admin user create failed"
	fi

	log "starting radosgw"
	# radosgw stays in the foreground until it reaches the mon: bound it
	timeout 120 radosgw -c "$CONF" -n client.rgw.a 2>>"$D/log/rgw-stderr.log" || die "radosgw failed to start"
	for _ in $(seq 1 240); do
		rgw_up && break
		sleep 0.25
	done
	rgw_up || die "radosgw does not answer at $ENDPOINT"
	log "ready at $ENDPOINT"
	print_env
}

# ---------------------------------------------------------------- mkbucket
mkbucket() {
	local name=${1:?usage: s3server.sh mkbucket DIR NAME} code
	rgw_up || die "the server at $ENDPOINT does not answer (start it first)"
	# SHA-256 of the empty body: curl 7.88 does not send x-amz-content-sha256 by itself
	code=$(curl -s -o "$D/mkbucket.out" -w '%{http_code}' --max-time 30 -X PUT \
		--aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
		-H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
		"$ENDPOINT/$name") || true
	case "$code" in
	200 | 409)
		# 409 BucketAlreadyExists / BucketAlreadyOwnedByYou: ours already
		if [[ "$code" == 409 ]] && ! grep -q BucketAlreadyOwnedByYou "$D/mkbucket.out"; then
			die "bucket $name exists and belongs to another user: $(cat "$D/mkbucket.out")"
		fi
		log "bucket $name ready"
		;;
	*) die "creating bucket $name failed (HTTP $code): $(cat "$D/mkbucket.out" 2>/dev/null)" ;;
	esac
}

case "$cmd" in
start) start ;;
stop) stop ;;
status)
	if rgw_up; then
		echo "running: $ENDPOINT"
	else
		echo "not running: $ENDPOINT"
		exit 3
	fi
	;;
env) print_env ;;
mkbucket) mkbucket "$@" ;;
wipe)
	stop KILL
	# only remove what looks like one of our server directories
	if [[ -f "$D/ceph.conf" || -f "$D/ports" ]]; then
		rm -rf -- "$D"
	elif [[ -d "$D" ]]; then
		log "not wiping $D: not an s3server.sh directory"
	fi
	;;
*) usage ;;
esac
