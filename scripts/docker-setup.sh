#!/usr/bin/env bash
# A private Docker for trying docker-compose.yml on a machine that reaches no image
# registry: Debian's docker.io and docker-compose, a dockerd of our own (own data root,
# exec root, socket, bridge and address pool), and the images the compose file names,
# built locally: a debootstrapped Debian base, python:3.11-slim on it (Debian's Python
# 3.11 in a venv at /usr/local), hashicorp/consul:1.16.3 from the Consul binary that
# scripts/build-consul.sh builds, and meshpy:0.1.0 from the project's Dockerfile.
#
#   scripts/docker-setup.sh [all]   install, start, build the images, check the network
#   scripts/docker-setup.sh install apt packages only (docker.io docker-compose debootstrap iptables)
#   scripts/docker-setup.sh start   start the private dockerd (prints the DOCKER_HOST to use)
#   scripts/docker-setup.sh images  base, python:3.11-slim and hashicorp/consul:1.16.3
#   scripts/docker-setup.sh build   images + meshpy:0.1.0 (docker build --network host)
#   scripts/docker-setup.sh verify  containers reach each other but nothing outside
#   scripts/docker-setup.sh env     print the export line for DOCKER_HOST
#   scripts/docker-setup.sh status  is our dockerd running
#   scripts/docker-setup.sh stop    stop our dockerd (by its recorded pid) and remove its
#                                   bridges and iptables rules and chains
#
# Then:  eval "$(scripts/docker-setup.sh env)"; docker-compose up -d
# Needs root (dockerd, debootstrap, iptables). Caches under
# ${MESH_CACHE_DIR:-$HOME/.cache/meshpy}/docker; second runs only check stamps.
#
# Network hygiene: ip forwarding stays off (dockerd --ip-forward=false --ip-masq=false),
# and DOCKER-USER drops anything from our address range that would leave through the
# default-route interface(s), or would come in through it to a container. Containers
# reach each other (same network) and the host; published ports answer on the host
# (127.0.0.1 through docker-proxy). dockerd's --ip 127.0.0.1 binds the default bridge's
# published ports to loopback; compose networks still listen on 0.0.0.0 (a per-network
# option), but a connection from outside is DNATed to the container and then dropped
# (no forwarding, DOCKER-USER). Image builds that need PyPI or Debian use
# --network host, as the host itself would.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${MESH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshpy}"
CACHE="$CACHE_ROOT/docker"
DATA_ROOT="$CACHE/data-root"
RUN_DIR="${MESH_DOCKER_RUN_DIR:-/run/meshpy-docker}"   # short: unix sockets live here
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
EXEC_ROOT="$RUN_DIR/exec"
LOG="$CACHE/dockerd.log"
BRIDGE="${MESH_DOCKER_BRIDGE:-meshbr0}"
BRIDGE_CIDR="${MESH_DOCKER_BRIDGE_CIDR:-10.212.0.1/24}"
POOL="${MESH_DOCKER_POOL:-10.213.0.0/16}"              # compose networks, /24 each
DOCKER="/usr/bin/docker"                               # Debian's CLI, matches its dockerd
COMPOSE="/usr/bin/docker-compose"
export DOCKER_HOST="unix://$SOCK"
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
export DOCKER_BUILDKIT=0                               # classic builder: no buildx needed

BASE_IMAGE="meshpy-local/debian-minbase"
PY_IMAGE="python:3.11-slim"
CONSUL_IMAGE="hashicorp/consul:1.16.3"
APP_IMAGE="meshpy:0.1.0"
CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"

T0=$SECONDS
say() { printf 'docker-setup [%4ds]: %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
timed() {  # timed LABEL cmd...: run, then report how long it took
    local label="$1" t=$SECONDS; shift
    "$@"
    say "$label done in $((SECONDS - t))s"
}
[[ $(id -u) -eq 0 ]] || die "needs root (dockerd, debootstrap, iptables)"

# ---------------------------------------------------------------- install
install_packages() {
    local want=() p
    for p in docker.io docker-compose debootstrap iptables; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
    done
    if ((${#want[@]} == 0)); then say "apt packages already installed"; return; fi
    say "installing ${want[*]} from the machine's apt sources"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
}

# ---------------------------------------------------------------- daemon
ext_ifaces() {  # the interface(s) of the default route(s), v4 and v6
    { ip -4 route show default; ip -6 route show default 2>/dev/null; } |
        awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u
}

our_pid() {  # the pid of our dockerd, if it runs
    [[ -s "$PIDFILE" ]] || return 1
    local pid; pid="$(cat "$PIDFILE")"
    [[ -d /proc/$pid ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--pidfile $PIDFILE" || return 1
    echo "$pid"
}

daemon_up() { "$DOCKER" info >/dev/null 2>&1; }

hygiene_rules() {  # the DOCKER-USER rules (as iptables args after the chain name)
    local ifc
    for ifc in $(ext_ifaces); do
        echo "-s $POOL -o $ifc -m comment --comment meshpy-docker -j DROP"
        echo "-s ${BRIDGE_CIDR%.*}.0/${BRIDGE_CIDR#*/} -o $ifc -m comment --comment meshpy-docker -j DROP"
        echo "-i $BRIDGE -o $ifc -m comment --comment meshpy-docker -j DROP"
        # and nothing in from outside to a container (a published port's DNAT included)
        echo "-i $ifc -d $POOL -m comment --comment meshpy-docker -j DROP"
        echo "-i $ifc -d ${BRIDGE_CIDR%.*}.0/${BRIDGE_CIDR#*/} -m comment --comment meshpy-docker -j DROP"
    done
}

apply_hygiene() {
    local r
    iptables -N DOCKER-USER 2>/dev/null || true
    while read -r r; do
        [[ -n "$r" ]] || continue
        # shellcheck disable=SC2086
        iptables -C DOCKER-USER $r 2>/dev/null || iptables -I DOCKER-USER 1 $r
    done < <(hygiene_rules)
    [[ -n "$(ext_ifaces)" ]] || say "warning: no default route found; nothing to drop"
    local fwd; fwd="$(cat /proc/sys/net/ipv4/ip_forward)"
    if [[ "$fwd" != 0 ]]; then
        say "ip forwarding was on; turning it off (restored by stop)"
        echo "$fwd" > "$RUN_DIR/ip_forward.before"
        sysctl -qw net.ipv4.ip_forward=0
    fi
}

start_daemon() {
    install_packages
    mkdir -p "$CACHE" "$RUN_DIR" "$DATA_ROOT"
    if pid="$(our_pid)"; then
        daemon_up || die "dockerd $pid runs but does not answer on $SOCK"
        apply_hygiene
        say "dockerd already running (pid $pid)"
        print_env; return
    fi
    rm -f "$PIDFILE" "$SOCK"
    # Our own bridge, so nothing of ours is called docker0.
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    # Storage driver: remembered once found; overlay2 first, then fuse-overlayfs, then vfs.
    local drivers
    if [[ -s "$CACHE/storage-driver" ]]; then drivers="$(cat "$CACHE/storage-driver")"
    else drivers="overlay2 fuse-overlayfs vfs"; fi
    local d ok=
    for d in $drivers; do
        [[ $d != fuse-overlayfs ]] || command -v fuse-overlayfs >/dev/null || continue
        say "starting dockerd (storage driver $d)"
        : > "$LOG"
        setsid dockerd \
            --host "unix://$SOCK" --pidfile "$PIDFILE" \
            --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
            --storage-driver "$d" \
            --bridge "$BRIDGE" --default-address-pool "base=$POOL,size=24" \
            --ip-forward=false --ip-masq=false --iptables=true --ip6tables=false --ipv6=false \
            --ip 127.0.0.1 \
            --userland-proxy=true --log-level warn \
            </dev/null >>"$LOG" 2>&1 &
        local i
        for ((i = 0; i < 60; i++)); do
            daemon_up && { ok=1; break; }
            kill -0 $! 2>/dev/null || break
            sleep 0.5
        done
        if [[ -n $ok ]]; then echo "$d" > "$CACHE/storage-driver"; break; fi
        say "dockerd with $d did not come up: $(tail -n 3 "$LOG" | tr '\n' ' ')"
        kill $! 2>/dev/null || true; wait $! 2>/dev/null || true
        rm -f "$PIDFILE"
    done
    [[ -n $ok ]] || die "dockerd would not start; see $LOG"
    apply_hygiene
    say "dockerd up (pid $(cat "$PIDFILE"), $("$DOCKER" info -f '{{.Driver}}'), log $LOG)"
    print_env
}

print_env() {
    # docker-compose 1.29 builds through the first `docker` on PATH; docker-py's own
    # builder (CLI_BUILD=0) talks to DOCKER_HOST directly, whatever CLI is installed.
    echo "export DOCKER_HOST=unix://$SOCK COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0"
    say "use: eval \"\$($0 env)\"   (then $DOCKER and $COMPOSE)"
}

our_bridges() {  # our default bridge and those of the networks our dockerd made
    echo "$BRIDGE"
    if daemon_up; then
        local n
        for n in $("$DOCKER" network ls -q --filter driver=bridge); do
            "$DOCKER" network inspect -f \
                '{{with index .Options "com.docker.network.bridge.name"}}{{.}}{{else}}br-{{printf "%.12s" $.Id}}{{end}}' "$n"
        done
    fi
    [[ -s "$RUN_DIR/bridges" ]] && cat "$RUN_DIR/bridges"
    true
}

delete_matching_rules() {  # delete_matching_rules TABLE REGEX: rules of ours in any chain
    local table="$1" re="$2" rule
    { iptables -t "$table" -S 2>/dev/null || true; } | { grep -E -- '^-A ' || true; } | { grep -E -- "$re" || true; } |
        while read -r rule; do
            # shellcheck disable=SC2086
            eval "iptables -t $table -D ${rule#-A }" 2>/dev/null || true
        done
}

other_dockerd() {  # another dockerd on this machine (not ours)
    local p mine="${1:-}"
    for p in $(pgrep -x dockerd 2>/dev/null); do [[ "$p" == "$mine" ]] || return 0; done
    return 1
}

stop_daemon() {
    local pid="" bridges
    mkdir -p "$RUN_DIR"
    pid="$(our_pid)" || pid=""
    bridges="$(our_bridges | sort -u | grep -v '^docker0$' || true)"
    echo "$bridges" > "$RUN_DIR/bridges"   # for a second try, should this one be cut short
    if [[ -n $pid ]]; then
        say "stopping dockerd $pid"
        kill -TERM "$pid"
        local i
        for ((i = 0; i < 60; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
        if [[ -d /proc/$pid ]]; then say "dockerd $pid still there; killing it"; kill -KILL "$pid" || true; sleep 1; fi
    else
        say "our dockerd is not running"
    fi
    # Its containerd and shims (found by our exec root's socket path), should any remain.
    local p
    for p in $(pgrep -f -- "$EXEC_ROOT/containerd/containerd" 2>/dev/null || true); do
        say "ending leftover process $p ($(tr '\0' ' ' < /proc/$p/cmdline | cut -c1-80))"
        kill -TERM "$p" 2>/dev/null || true
    done
    # Mounts left under our roots.
    { grep -E " ($DATA_ROOT|$RUN_DIR)/" /proc/mounts || true; } | awk '{print $2}' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    # iptables: our hygiene rules, then every rule naming our bridges or address ranges.
    local re="meshpy-docker" part
    for part in $bridges "[^0-9]${POOL%.*.*}." "[^0-9]${BRIDGE_CIDR%.*}."; do re+="|${part//./\\.}"; done
    for t in filter nat; do delete_matching_rules "$t" "$re"; done
    if ! other_dockerd "$pid"; then
        # No other dockerd: the chains dockerd made are ours to remove (with the jumps to them).
        for t in filter nat; do
            delete_matching_rules "$t" '-j DOCKER(-USER|-ISOLATION-STAGE-[12])?( |$)'
            for c in DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2; do
                iptables -t "$t" -F "$c" 2>/dev/null || true
                iptables -t "$t" -X "$c" 2>/dev/null || true
            done
        done
    else
        say "another dockerd runs: leaving the shared DOCKER* chains alone"
    fi
    local b
    for b in $bridges; do
        ip link show "$b" >/dev/null 2>&1 && { ip link delete "$b" type bridge && say "removed bridge $b"; }
    done
    if [[ -s "$RUN_DIR/ip_forward.before" ]]; then
        sysctl -qw "net.ipv4.ip_forward=$(cat "$RUN_DIR/ip_forward.before")"
    fi
    rm -f "$PIDFILE" "$SOCK" "$RUN_DIR/bridges" "$RUN_DIR/ip_forward.before"
    # The exec root's leftovers (state dirs, sockets), once nothing is mounted there.
    grep -q " $RUN_DIR/" /proc/mounts || rm -rf "$EXEC_ROOT"
    rmdir "$RUN_DIR" 2>/dev/null || true
    say "stopped"
}

need_daemon() { daemon_up || die "our dockerd is not running: run '$0 start' first"; }

# ---------------------------------------------------------------- images
image_label() { "$DOCKER" image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

host_suite() { . /etc/os-release; echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"; }

host_mirror() {  # the first enabled Debian (main) URI of the host's apt sources for SUITE
    local suite="$1"
    {
        # deb822 .sources
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            awk -v s="$suite" 'BEGIN{RS=""; IGNORECASE=1}
                { uris=""; suites=""; types=""; en="yes"
                  n=split($0, L, "\n")
                  for (i=1;i<=n;i++) {
                    if (L[i] ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", L[i]); uris=L[i] }
                    if (L[i] ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", L[i]); suites=" " L[i] " " }
                    if (L[i] ~ /^Types:/) { types=" " L[i] " " }
                    if (L[i] ~ /^Enabled:[ \t]*no/) en="no"
                  }
                  if (en=="yes" && types ~ / deb / && suites ~ (" " s " ")) { split(uris, U, " "); print U[1] } }' "$f"
        done
        # one-line .list
        { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
            sed -E 's/\[[^]]*\]//' | awk -v s="$suite" '$1=="deb" && $3==s {print $2}'
    } | awk 'NR == 1'
}

build_base() {
    local suite mirror tarball
    suite="$(host_suite)"
    tarball="$CACHE/rootfs-$suite-minbase.tar"
    if [[ "$(image_label "$BASE_IMAGE:$suite" meshpy.rootfs)" == "$(basename "$tarball")" && -s "$tarball" ]]; then
        say "base image $BASE_IMAGE:$suite present"; return
    fi
    if [[ ! -s "$tarball" ]]; then
        mirror="$(host_mirror "$suite")"
        [[ -n $mirror ]] || die "no 'deb' source for $suite in the host's apt sources"
        say "debootstrap --variant=minbase $suite (from the host's first apt source)"
        local target="$CACHE/rootfs-$suite.tmp"
        rm -rf "$target"
        debootstrap --variant=minbase "$suite" "$target" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
            { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log $CACHE/debootstrap.log)"; }
        # The host's apt sources and network settings (proxy, validity checks), no caches.
        rm -f "$target/etc/apt/sources.list"
        cp -a /etc/apt/sources.list "$target/etc/apt/" 2>/dev/null || true
        find /etc/apt/sources.list.d -maxdepth 1 \( -name '*.list' -o -name '*.sources' \) \
            -exec cp -a {} "$target/etc/apt/sources.list.d/" \;
        { grep -l -E '^[[:space:]]*Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null || true; } |
            while read -r f; do cp -a "$f" "$target/etc/apt/apt.conf.d/"; done
        [[ -d /etc/apt/auth.conf.d ]] && cp -a /etc/apt/auth.conf.d "$target/etc/apt/" || true
        rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/* "$target"/dev/*
        tar -C "$target" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$target"
    fi
    say "docker import $(basename "$tarball")"
    "$DOCKER" import --change 'CMD ["bash"]' --change "LABEL meshpy.rootfs=$(basename "$tarball")" \
        "$tarball" "$BASE_IMAGE:$suite" >/dev/null
}

pip_env_lines() {  # the host's PIP_* settings that make sense inside an image
    local name val
    while IFS='=' read -r name val; do
        case "$name" in PIP_CERT|PIP_CONFIG_FILE) continue ;; esac
        [[ "$val" == /* ]] && continue   # a host path (find-links, cache ...) is not in the image
        printf 'ENV %s=%q\n' "$name" "$val"
    done < <(env | { grep -E '^PIP_[A-Z0-9_]+=' || true; } | sort)
}

build_python() {
    local suite ctx hash
    suite="$(host_suite)"
    ctx="$CACHE/ctx-python"
    rm -rf "$ctx"; mkdir -p "$ctx/pipconf"
    cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
    # The host's pip configuration files, each to the same place in the image.
    local pipcopy="" f
    for f in /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" \
             ${PIP_CONFIG_FILE:+"$PIP_CONFIG_FILE"}; do
        [[ -f $f ]] || continue
        local dest="$f"; [[ $f == "$HOME"/* ]] && dest="/root${f#"$HOME"}"
        local flat; flat="$(echo "$dest" | tr '/' '_')"
        cp "$f" "$ctx/pipconf/$flat"
        pipcopy+="COPY pipconf/$flat $dest"$'\n'
    done
    [[ -n ${PIP_CONFIG_FILE:-} && -f $PIP_CONFIG_FILE ]] && pipcopy+="ENV PIP_CONFIG_FILE=$PIP_CONFIG_FILE"$'\n'
    cat > "$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE:$suite
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \\
    && rm -rf /var/lib/apt/lists/*
# python, pip and whatever pip installs live in a venv at /usr/local (on every PATH).
RUN python3.11 -m venv /usr/local && /usr/local/bin/python -m pip --version
COPY ca-certificates.crt $CA_BUNDLE
${pipcopy}ENV SSL_CERT_FILE=$CA_BUNDLE PIP_CERT=$CA_BUNDLE REQUESTS_CA_BUNDLE=$CA_BUNDLE \\
    PIP_NO_CACHE_DIR=1
$(pip_env_lines)
CMD ["python3"]
EOF
    hash="$( (cat "$ctx/Dockerfile"; cat "$ctx/ca-certificates.crt" "$ctx"/pipconf/* 2>/dev/null;
              image_label "$BASE_IMAGE:$suite" meshpy.rootfs) | sha256sum | cut -c1-16)"
    echo "LABEL meshpy.setup=$hash" >> "$ctx/Dockerfile"
    if [[ "$(image_label "$PY_IMAGE" meshpy.setup)" == "$hash" ]]; then
        say "$PY_IMAGE present"; return
    fi
    say "building $PY_IMAGE on $BASE_IMAGE:$suite (apt inside, --network host)"
    "$DOCKER" build --network host -t "$PY_IMAGE" "$ctx" > "$CACHE/build-python.log" 2>&1 ||
        { tail -n 30 "$CACHE/build-python.log" >&2; die "building $PY_IMAGE failed (log $CACHE/build-python.log)"; }
    "$DOCKER" run --rm --network none "$PY_IMAGE" python -c 'import sys, ssl; assert sys.version_info[:2] == (3, 11); print("python", sys.version.split()[0])' >&2
}

build_consul() {
    local suite ctx bin hash
    suite="$(host_suite)"
    bin="$(bash "$root/scripts/build-consul.sh")"
    ctx="$CACHE/ctx-consul"
    rm -rf "$ctx"; mkdir -p "$ctx"
    cp "$bin" "$ctx/consul"
    # The official image's entrypoint, minus the switch to a 'consul' user: 'agent ...'
    # runs the agent with the image's data and config dirs; '-flags' mean 'agent';
    # a consul subcommand runs consul; anything else runs as it is.
    cat > "$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
CONSUL_DATA_DIR=/consul/data
CONSUL_CONFIG_DIR=/consul/config
if [ "${1#-}" != "$1" ]; then set -- agent "$@"; fi
if [ "$1" = agent ]; then
    shift
    set -- consul agent -data-dir="$CONSUL_DATA_DIR" -config-dir="$CONSUL_CONFIG_DIR" "$@"
elif [ "$1" = version ]; then
    set -- consul "$@"
elif consul --help "$1" 2>&1 | grep -q "consul $1"; then
    set -- consul "$@"
fi
exec "$@"
EOF
    chmod 755 "$ctx/docker-entrypoint.sh" "$ctx/consul"
    cat > "$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE:$suite
COPY consul /bin/consul
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /consul/data /consul/config
VOLUME /consul/data
EXPOSE 8300 8301 8301/udp 8302 8302/udp 8500 8600 8600/udp
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["agent", "-dev", "-client", "0.0.0.0"]
EOF
    hash="$( (cat "$ctx/Dockerfile" "$ctx/docker-entrypoint.sh" "$ctx/consul";
              image_label "$BASE_IMAGE:$suite" meshpy.rootfs) | sha256sum | cut -c1-16)"
    echo "LABEL meshpy.setup=$hash" >> "$ctx/Dockerfile"
    if [[ "$(image_label "$CONSUL_IMAGE" meshpy.setup)" == "$hash" ]]; then
        say "$CONSUL_IMAGE present"; rm -rf "$ctx"; return
    fi
    say "building $CONSUL_IMAGE from $bin"
    "$DOCKER" build -q --network none -t "$CONSUL_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
    "$DOCKER" run --rm --network none "$CONSUL_IMAGE" version | awk "NR == 1" >&2
}

build_app() {
    # The project's own Dockerfile, unchanged, on the local python:3.11-slim. Docker's
    # build cache makes a second run take seconds when nothing changed.
    say "docker build --network host -t $APP_IMAGE $root"
    "$DOCKER" build --network host -t "$APP_IMAGE" "$root" > "$CACHE/build-app.log" 2>&1 ||
        { tail -n 30 "$CACHE/build-app.log" >&2; die "building $APP_IMAGE failed (log $CACHE/build-app.log)"; }
    "$DOCKER" image prune -f >/dev/null   # the untagged images earlier builds left
    "$DOCKER" run --rm --network none "$APP_IMAGE" sh -c 'python --version && envoy --version | grep -m1 . && command -v meshctl' >&2
}

images() {
    need_daemon
    timed "base image" build_base
    timed "$PY_IMAGE" build_python
    timed "$CONSUL_IMAGE" build_consul
}

# ---------------------------------------------------------------- verify
verify() {
    need_daemon
    local suite img net="meshpy-setup-verify" ok=1
    suite="$(host_suite)"; img="$BASE_IMAGE:$suite"
    [[ "$(cat /proc/sys/net/ipv4/ip_forward)" == 0 ]] || { say "FAIL: ip forwarding is on"; ok=; }
    local r
    while read -r r; do
        # shellcheck disable=SC2086
        iptables -C DOCKER-USER $r 2>/dev/null || { say "FAIL: DOCKER-USER lacks: $r"; ok=; }
    done < <(hygiene_rules)
    [[ -n $ok ]] || die "network hygiene missing: not sending any test traffic"
    "$DOCKER" network rm "$net" >/dev/null 2>&1 || true
    "$DOCKER" network create "$net" >/dev/null
    # (docker run warns that forwarding is off: that is the point.)
    "$DOCKER" run -d --rm --name meshpy-verify-srv --network "$net" --network-alias srv "$PY_IMAGE" \
        python -m http.server 8000 >/dev/null 2>&1
    sleep 1
    # Two containers on one network talk (by name, through Docker's DNS).
    if "$DOCKER" run --rm --network "$net" "$PY_IMAGE" python -c \
        'import urllib.request; urllib.request.urlopen("http://srv:8000/", timeout=5)' 2>/dev/null; then
        say "ok: containers on one network reach each other"
    else say "FAIL: containers on one network cannot talk"; ok=; fi
    # Nothing outside: the default gateway (a host on the machine's own link) on 443.
    local gw
    gw="$(ip -4 route show default | awk '{print $3; exit}')"
    if [[ -n $gw ]]; then
        if "$DOCKER" run --rm --network "$net" "$PY_IMAGE" python -c \
            "import socket; socket.create_connection(('$gw', 443), timeout=4)" 2>/dev/null; then
            say "FAIL: a container opened a TCP connection to $gw:443"; ok=
        else say "ok: a container cannot connect to the default gateway $gw:443"; fi
    fi
    # A published port on the host's loopback answers.
    "$DOCKER" run -d --rm --name meshpy-verify-pub --network "$net" -p 18999:8000 "$PY_IMAGE" \
        python -m http.server 8000 >/dev/null 2>&1
    sleep 1.5
    if python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18999/", timeout=5)'; then
        say "ok: a port published on 127.0.0.1 answers"
    else say "FAIL: published port 127.0.0.1:18999 does not answer"; ok=; fi
    "$DOCKER" rm -f meshpy-verify-srv meshpy-verify-pub >/dev/null 2>&1 || true
    "$DOCKER" network rm "$net" >/dev/null
    [[ -n $ok ]] || die "network check failed"
}

# ---------------------------------------------------------------- main
cmd="${1:-all}"
case "$cmd" in
    install) timed install install_packages ;;
    start)   timed start start_daemon ;;
    stop)    stop_daemon ;;
    env)     print_env 2>/dev/null ;;
    status)  if pid="$(our_pid)"; then say "running (pid $pid) on $SOCK"; else say "not running"; exit 1; fi ;;
    images)  images ;;
    build)   images; timed "$APP_IMAGE" build_app ;;
    verify)  verify ;;
    all)     timed install install_packages; timed start start_daemon >/dev/null
             images; timed "$APP_IMAGE" build_app; timed verify verify
             say "all done in $((SECONDS - T0))s; docker-compose with: export DOCKER_HOST=unix://$SOCK"
             print_env ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
