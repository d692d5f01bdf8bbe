# shellcheck shell=bash
# Helpers shared by the S3 tests, test/integration/s3_export.sh and worker_s3.sh (sourced, not
# run; scripts/test.sh runs only test/integration/*.sh, not this directory). Source
# lib/common.sh first.
#
#   s3_require_ceph [EXTRA...]   the Ceph commands (radosgw ceph-mon ceph-osd radosgw-admin ceph
#                                monmaptool) and EXTRA (each a command and its package): when one
#                                is missing, install the packages with apt-get (as root), and if
#                                that does not help print SKIP and exit 77
#   pick_port VAR                set VAR to a TCP port on 127.0.0.1 nobody listens on (nor a
#                                PostgreSQL socket in /tmp), distinct from those picked before
#   listening PORT               something listens on 127.0.0.1:PORT
#   s3_start DIR ENVFILE         start the gateway (scripts/s3server.sh, needs S3SERVER) in DIR
#                                on ports picked here (RGW_PORT, MON_PORT, MON_PORT2), its
#                                S3_* variables written to ENVFILE and loaded; status of start
#   s3_credentials FILE SECRET   a credentials file with S3_ACCESS_KEY and SECRET, readable by
#                                the server's OS user only
#   s3get KEY OUTFILE            read back the bucket ($BUCKET) with an independent client:
#   s3ls PREFIX                  awscli when installed, else curl's own SigV4 (needs S3_*, WORK);
#   s3_client_note               s3ls prints one key a line; s3_client_note says which client
#   silent_server VAR PORT SECS  a TCP server on 127.0.0.1:PORT that accepts connections and never
#                                answers, for SECS s at most; VAR = its pid; waits until it listens

# ---------------------------------------------------------------- packages
S3_CEPH_COMMANDS=(radosgw ceph-mon ceph-osd radosgw-admin ceph monmaptool)
S3_CEPH_PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)

s3_require_ceph() { # [extra command/package...]
	local need=("${S3_CEPH_COMMANDS[@]}" "$@")
	if ! _s3_missing "${need[@]}"; then
		return 0
	fi
	if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
		echo "installing the Ceph packages (${S3_CEPH_PACKAGES[*]})"
		DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
			"${S3_CEPH_PACKAGES[@]}" "$@" >/dev/null 2>&1 || true
	fi
	if _s3_missing "${need[@]}"; then
		echo "SKIP: the Ceph packages (${S3_CEPH_PACKAGES[*]}) are missing and could not be installed"
		exit 77
	fi
}

_s3_missing() { # command...: one of them is not on PATH
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || return 0
	done
	return 1
}

# ---------------------------------------------------------------- ports
USED_PORTS=" "
pick_port() { # var
	local port hex
	for ((port = 20000 + RANDOM % 20000; port < 60000; port++)); do
		printf -v hex ':%04X ' "$port"
		if ! grep -qs "$hex" /proc/net/tcp /proc/net/tcp6 && [[ "$USED_PORTS" != *" $port "* ]] &&
			! compgen -G "/tmp/.s.PGSQL.$port*" >/dev/null; then
			USED_PORTS="$USED_PORTS$port "
			printf -v "$1" '%s' "$port"
			return 0
		fi
	done
	return 1
}

listening() { grep -qs "$(printf ':%04X ' "$1")" /proc/net/tcp; }

# ---------------------------------------------------------------- the gateway
s3_start() { # dir envfile
	pick_port RGW_PORT && pick_port MON_PORT && pick_port MON_PORT2 || return
	S3_RGW_PORT=$RGW_PORT S3_MON_PORT=$MON_PORT S3_MON_PORT2=$MON_PORT2 "$S3SERVER" start "$1" >"$2" || return
	# shellcheck disable=SC1090 # written by scripts/s3server.sh start
	source "$2"
}

s3_credentials() { # file secret
	printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_ACCESS_KEY" "$2" >"$1"
	chmod 0600 "$1"
	((EUID != 0)) || chown postgres "$1"
}

# ---------------------------------------------------------------- an independent S3 client
S3_EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

_s3_aws() {
	AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=$S3_REGION \
		AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$WORK/no-aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/no-aws-credentials \
		timeout 60 aws --endpoint-url "$S3_ENDPOINT" "$@"
}

s3get() { # key outfile
	rm -f "$2"
	if command -v aws >/dev/null 2>&1; then
		_s3_aws s3 cp --only-show-errors "s3://$BUCKET/$1" "$2"
	else
		timeout 60 curl -sf --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
			-H "x-amz-content-sha256: $S3_EMPTY_SHA" -o "$2" "$S3_ENDPOINT/$BUCKET/$1"
	fi
}

s3ls() { # prefix: one key a line
	if command -v aws >/dev/null 2>&1; then
		_s3_aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$1" --query 'Contents[].Key' --output text | tr '\t' '\n'
	else
		timeout 60 curl -sf --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
			-H "x-amz-content-sha256: $S3_EMPTY_SHA" "$S3_ENDPOINT/$BUCKET?list-type=2&prefix=$1" |
			grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'
	fi
}

s3_client_note() {
	if command -v aws >/dev/null 2>&1; then
		echo "# reading objects back with awscli"
	else
		echo "# reading objects back with curl --aws-sigv4 (no awscli)"
	fi
}

# ---------------------------------------------------------------- a server that never answers
silent_server() { # var port seconds
	"${PYTHON:-python3}" - "$2" "$3" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
s.settimeout(0.5)
held, t = [], time.time()
while time.time() - t < float(sys.argv[2]):      # bounded: stops by itself
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
PY
	printf -v "$1" '%s' "$!"
	for _ in $(seq 1 50); do
		listening "$2" && return 0
		sleep 0.1
	done
	return 0
}
