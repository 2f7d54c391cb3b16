#!/usr/bin/env bash
# Real nodes beside the kwok ones: one per zone (real-zone-a/b/c), each its own containerd and
# kubelet on this machine, plus one kube-proxy (iptables), CoreDNS and MetalLB's controller (the
# addresses of LoadBalancer Services) for the whole cluster.
# Called by hack/cluster.sh (`up` after the control plane, `down` before it).
#
#   hack/nodes.sh up        start the nodes, kube-proxy and CoreDNS; import the local images
#   hack/nodes.sh down      stop everything and remove what it left: processes, mounts,
#                           cgroups, iptables chains, bridges, sysctls
#   hack/nodes.sh status    exit 0 when every real node is Ready
#   hack/nodes.sh stop-kubelet <zone> | start-kubelet <zone>
#                           stop or start one node's kubelet (a real zone loss: the Node goes
#                           NotReady after the node-monitor grace period)
#
# Facts this follows (kept in docs/real-nodes.md): cgroup v1 only here (kubelet needs
# failCgroupV1: false, cgroupfs); the sandbox lacks CAP_SYS_RESOURCE (containerd's
# restrict_oom_score_adj); no IPVS (iptables mode); a kubelet garbage-collects containers it
# does not know, so each node has its own containerd.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=hack/versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT=${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}
STATE_DIR=$REPO_ROOT/.cluster
NODES_DIR=$STATE_DIR/nodes
KUBECONFIG_FILE=$STATE_DIR/kubeconfig
K8S_BIN=$CACHE_ROOT/kubernetes-$KUBERNETES_VERSION/bin
COREDNS_BIN=$CACHE_ROOT/coredns-$COREDNS_VERSION/bin
METALLB_DIR=$CACHE_ROOT/metallb-$METALLB_VERSION
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}

ZONES=(a b c)
# All pod CIDRs lie in this supernet (kube-proxy's clusterCIDR: traffic inside it is not
# masqueraded, so pods see each other's addresses across nodes).
POD_SUPERNET=10.244.0.0/16
CLUSTER_DNS=10.0.0.10
COREDNS_PORT=1053
# LoadBalancer addresses (MetalLB pool), routed to an empty bridge so that clients on this
# machine reach them (this kernel has no dummy interfaces); kube-proxy's rules take it from there.
LB_CIDR=172.30.255.0/24
LB_RANGE=172.30.255.10-172.30.255.250
LB_LINK=co-lb0
SYSCTLS=(kernel.panic_on_oops kernel.panic vm.overcommit_memory net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)

log() { printf '[nodes] %s\n' "$*" >&2; }
die() { printf '[nodes] ERROR: %s\n' "$*" >&2; exit 1; }
kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

index_of() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; *) die "unknown zone $1 (a, b or c)" ;; esac; }
node_name() { echo "real-zone-$1"; }
node_dir() { echo "$NODES_DIR/$(node_name "$1")"; }
pod_cidr() { echo "10.244.$(index_of "$1").0/24"; }
bridge_name() { echo "co-br-$1"; }
kubelet_port() { echo $((10240 + 10 * $(index_of "$1"))); }
cgroup_name() { echo "course-operator-$(node_name "$1")"; }

host_ip() {
  local ip
  ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)
  [[ -n $ip ]] || ip=$(hostname -I 2>/dev/null | awk '{print $1}')
  [[ -n $ip ]] || die "cannot find this machine's IPv4 address"
  echo "$ip"
}

alive() { [[ -n ${1:-} && -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
pid_of() { cat "$1" 2>/dev/null || true; }

# start_daemon <pidfile> <logfile> <command...>: detached, its pid recorded.
start_daemon() {
  local pidfile=$1 logfile=$2; shift 2
  if alive "$(pid_of "$pidfile")"; then return 0; fi
  (exec setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- 8>&-) &
  echo $! >"$pidfile"
}

# stop_pidfile <pidfile>: SIGTERM, up to 10 s, then SIGKILL.
stop_pidfile() {
  local pid i
  pid=$(pid_of "$1")
  alive "$pid" || { rm -f "$1"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do alive "$pid" || break; sleep 0.2; done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  rm -f "$1"
}

wait_for() {
  local what=$1 timeout=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - start < timeout )) || { log "timed out after ${timeout}s waiting for $what"; return 1; }
    sleep 1
  done
  log "  $what ($(( SECONDS - start ))s)"
}

# --- cgroups (v1): a root per node in every hierarchy ------------------------------------
cgroup_create() {
  local name=$1 h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h && ! -L ${h%/} ]] || continue
    [[ $h == */unified/ ]] && continue   # the cgroup2 mount holds no controllers here
    mkdir -p "$h$name"
    if [[ -f ${h}cpuset.cpus ]]; then
      [[ -s $h$name/cpuset.cpus && $(cat "$h$name/cpuset.cpus") != "" ]] || cat "${h}cpuset.cpus" >"$h$name/cpuset.cpus"
      [[ $(cat "$h$name/cpuset.mems") != "" ]] || cat "${h}cpuset.mems" >"$h$name/cpuset.mems"
    fi
  done
}

cgroup_remove() {
  local name=$1 h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h$name ]] || continue
    # children first (pods, QoS classes), deepest paths first
    find "$h$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# --- containerd ------------------------------------------------------------------------
write_containerd_config() {
  local z=$1 dir
  dir=$(node_dir "$z")
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$dir/containerd/config.toml" <<EOF
# Generated by hack/nodes.sh for $(node_name "$z").
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:dev"
  # The sandbox lacks CAP_SYS_RESOURCE: without this runc fails on the pause container.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "$((10010 + $(index_of "$z")))"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$dir/cni/net.d"
EOF
  cat >"$dir/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$(node_name "$z")",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$(bridge_name "$z")",
      "isGateway": true,
      "hairpinMode": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$(pod_cidr "$z")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# --- kubelet ---------------------------------------------------------------------------
write_kubelet_config() {
  local z=$1 dir port ip
  dir=$(node_dir "$z")
  port=$(kubelet_port "$z")
  ip=$(host_ip)
  mkdir -p "$dir/kubelet" "$dir/pod-logs" "$dir/volume-plugins"
  # Pods resolve through CoreDNS (clusterDNS); this is only what dnsPolicy: Default sees.
  printf 'nameserver %s\n' "$CLUSTER_DNS" >"$dir/resolv.conf"
  cat >"$dir/kubelet-config.yaml" <<EOF
# Generated by hack/nodes.sh for $(node_name "$z").
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 only on this machine, and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$(cgroup_name "$z")
address: $ip
port: $port
healthzBindAddress: 127.0.0.1
healthzPort: $((port + 1))
readOnlyPort: 0
# Local development cluster: the apiserver and metrics-server reach the kubelet without a
# client certificate (the kubelet listens on this machine's address only).
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
podCIDR: $(pod_cidr "$z")
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: $dir/resolv.conf
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/volume-plugins
failSwapOn: false
makeIPTablesUtilChains: false
serializeImagePulls: false
# Each node reports the whole machine: keep a node to a share of it.
maxPods: 40
systemReserved: {cpu: 100m, memory: 256Mi}
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Images are imported, never pulled: an image GC would lose them.
imageMinimumGCAge: 876000h
nodeStatusReportFrequency: 10s
EOF
}

kubelet_args() {
  local z=$1 dir
  dir=$(node_dir "$z")
  echo --config="$dir/kubelet-config.yaml" --kubeconfig="$KUBECONFIG_FILE" \
    --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" \
    --hostname-override="$(node_name "$z")" --node-ip="$(host_ip)" \
    --node-labels="topology.kubernetes.io/zone=zone-$z,type=real"
}

start_kubelet() {
  local z=$1 dir
  dir=$(node_dir "$z")
  # shellcheck disable=SC2046
  start_daemon "$dir/kubelet.pid" "$dir/kubelet.log" "$K8S_BIN/kubelet" $(kubelet_args "$z")
}

# --- kube-proxy (one for the machine) ------------------------------------------------------
write_kube_proxy_config() {
  mkdir -p "$NODES_DIR/kube-proxy"
  cat >"$NODES_DIR/kube-proxy/config.yaml" <<EOF
# Generated by hack/nodes.sh: one kube-proxy serves every node of this machine (several would
# fight over the same iptables chains).
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIG_FILE}
mode: iptables
clusterCIDR: $POD_SUPERNET
hostnameOverride: $(node_name a)
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Change no conntrack sysctl of the machine.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# --- CoreDNS (a process on this machine, behind the kube-dns Service) ------------------------
write_coredns_config() {
  mkdir -p "$NODES_DIR/coredns"
  cat >"$NODES_DIR/coredns/Corefile" <<EOF
cluster.local:$COREDNS_PORT in-addr.arpa:$COREDNS_PORT {
    bind $(host_ip)
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $KUBECONFIG_FILE
        pods insecure
        fallthrough in-addr.arpa
    }
    cache 5
}
.:$COREDNS_PORT {
    bind $(host_ip)
    # No upstream resolver is reachable from this machine: answer NXDOMAIN at once.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
  cat >"$NODES_DIR/coredns/kube-dns.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $CLUSTER_DNS
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $COREDNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $COREDNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: hack-nodes.sh}
addressType: IPv4
endpoints:
- addresses: [$(host_ip)]
  conditions: {ready: true}
ports:
- {name: dns, port: $COREDNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $COREDNS_PORT, protocol: TCP}
EOF
}

# --- MetalLB (its controller only: the address allocator) -------------------------------------
start_metallb() {
  mkdir -p "$NODES_DIR/metallb"
  ip link show "$LB_LINK" >/dev/null 2>&1 || ip link add "$LB_LINK" type bridge
  ip link set "$LB_LINK" up
  ip route replace "$LB_CIDR" dev "$LB_LINK"
  kc apply --server-side --force-conflicts -f "$METALLB_DIR/crds.yaml" >/dev/null
  KUBECTL=$K8S_BIN/kubectl KUBECONFIG=$KUBECONFIG_FILE "$HACK_DIR/crd-established.sh" ipaddresspools.metallb.io
  cat >"$NODES_DIR/metallb/pool.yaml" <<POOL
apiVersion: v1
kind: Namespace
metadata: {name: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: local, namespace: metallb-system}
spec:
  addresses: [$LB_RANGE]
POOL
  kc apply -f "$NODES_DIR/metallb/pool.yaml" >/dev/null
  start_daemon "$NODES_DIR/metallb/pid" "$NODES_DIR/metallb/log" \
    env KUBECONFIG="$KUBECONFIG_FILE" "$METALLB_DIR/bin/controller" \
    --namespace metallb-system --webhook-mode disabled --port 7472 --log-level warn
}

# --- sysctls ---------------------------------------------------------------------------------
record_sysctls() {
  local f=$NODES_DIR/sysctls.before s
  [[ -s $f ]] && return 0
  for s in "${SYSCTLS[@]}"; do
    if v=$(sysctl -n "$s" 2>/dev/null); then echo "$s=$v"; fi
  done >"$f"
}

restore_sysctls() {
  local f=$NODES_DIR/sysctls.before line
  [[ -f $f ]] || return 0
  while IFS= read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || true; done <"$f"
}

# --- up / down -------------------------------------------------------------------------------
real_nodes_ready() {
  local z status
  for z in "${ZONES[@]}"; do
    status=$(kc get node "$(node_name "$z")" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)
    [[ $status == True ]] || return 1
  done
}

coredns_answers() {
  # The kubernetes Service always exists; its name resolves once CoreDNS has synced.
  kc get --raw /api/v1/namespaces/default/services/kubernetes >/dev/null 2>&1 || return 1
  [[ -n $(getent hosts "kubernetes.default.svc.cluster.local" 2>/dev/null) ]] && return 0
  # Without a resolver pointing at CoreDNS on the host, ask it over TCP through bash.
  timeout 2 bash -c "exec 3<>/dev/tcp/$(host_ip)/$COREDNS_PORT" 2>/dev/null
}

do_up() {
  [[ -s $KUBECONFIG_FILE ]] || die "no control plane: run hack/cluster.sh up"
  local z bin t0=$SECONDS
  for bin in containerd runc ctr iptables conntrack; do
    command -v "$bin" >/dev/null || die "$bin missing: run hack/install-deps.sh"
  done
  [[ -x $K8S_BIN/kubelet && -x $K8S_BIN/kube-proxy ]] || die "kubelet/kube-proxy not built: run hack/build.sh"
  [[ -x $COREDNS_BIN/coredns ]] || die "coredns not built: run hack/build.sh"
  [[ -x $METALLB_DIR/bin/controller ]] || die "MetalLB's controller not built: run hack/build.sh"
  [[ -x $CNI_BIN_DIR/bridge ]] || die "CNI plugins missing in $CNI_BIN_DIR: run hack/install-deps.sh"
  mkdir -p "$NODES_DIR"
  record_sysctls
  modprobe br_netfilter 2>/dev/null || true

  log "starting containerd on ${#ZONES[@]} nodes"
  for z in "${ZONES[@]}"; do
    write_containerd_config "$z"
    start_daemon "$(node_dir "$z")/containerd.pid" "$(node_dir "$z")/containerd.log" \
      containerd --config "$(node_dir "$z")/containerd/config.toml"
  done
  for z in "${ZONES[@]}"; do
    wait_for "containerd of $(node_name "$z")" 30 ctr -a "$(node_dir "$z")/containerd/containerd.sock" version
  done
  "$HACK_DIR/images.sh" import-only

  log "starting kubelets"
  for z in "${ZONES[@]}"; do
    cgroup_create "$(cgroup_name "$z")"
    write_kubelet_config "$z"
    start_kubelet "$z"
  done

  log "starting kube-proxy and CoreDNS"
  write_kube_proxy_config
  start_daemon "$NODES_DIR/kube-proxy/pid" "$NODES_DIR/kube-proxy/log" \
    "$K8S_BIN/kube-proxy" --config="$NODES_DIR/kube-proxy/config.yaml"
  write_coredns_config
  kc apply -f "$NODES_DIR/coredns/kube-dns.yaml" >/dev/null
  start_daemon "$NODES_DIR/coredns/pid" "$NODES_DIR/coredns/log" \
    "$COREDNS_BIN/coredns" -conf "$NODES_DIR/coredns/Corefile"

  start_metallb

  wait_for "3 real nodes Ready" 120 real_nodes_ready || { tail_logs; die "real nodes not Ready"; }
  wait_for "CoreDNS listening" 30 coredns_answers || { tail_logs; die "CoreDNS not answering"; }
  log "real nodes up in $(( SECONDS - t0 ))s: $(for z in "${ZONES[@]}"; do printf '%s ' "$(node_name "$z")"; done)"
}

tail_logs() {
  local f
  for f in "$NODES_DIR"/*/*.log "$NODES_DIR"/kube-proxy/log "$NODES_DIR"/coredns/log "$NODES_DIR"/metallb/log; do
    [[ -f $f ]] || continue
    log "---- last lines of $f"
    tail -n 15 "$f" >&2
  done
}

# Pod sandboxes and containers of one node's containerd, stopped through its CRI.
stop_node_containers() {
  local z=$1 sock ns
  sock=$(node_dir "$z")/containerd/containerd.sock
  [[ -S $sock ]] || return 0
  for ns in k8s.io; do
    local c
    for c in $(ctr -a "$sock" -n "$ns" tasks list -q 2>/dev/null); do
      ctr -a "$sock" -n "$ns" tasks kill -s KILL "$c" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for c in $(ctr -a "$sock" -n "$ns" tasks list -q 2>/dev/null); do
      ctr -a "$sock" -n "$ns" tasks delete -f "$c" >/dev/null 2>&1 || true
    done
  done
}

do_down() {
  [[ -d $NODES_DIR ]] || return 0
  local z dir m
  log "stopping real nodes"
  stop_pidfile "$NODES_DIR/coredns/pid"
  stop_pidfile "$NODES_DIR/metallb/pid"
  ip link delete "$LB_LINK" 2>/dev/null || true
  if [[ -f $NODES_DIR/kube-proxy/pid ]]; then
    stop_pidfile "$NODES_DIR/kube-proxy/pid"
    [[ -x $K8S_BIN/kube-proxy ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  # kube-proxy --cleanup leaves KUBE-FIREWALL behind (and the kubelets' KUBE-* chains).
  remove_kube_chains
  for z in "${ZONES[@]}"; do
    dir=$(node_dir "$z")
    stop_pidfile "$dir/kubelet.pid"
    kc delete node "$(node_name "$z")" --wait=false >/dev/null 2>&1 || true
    stop_node_containers "$z"
    stop_pidfile "$dir/containerd.pid"
  done
  # Leftover shims of our containerds (their command lines name our state directories).
  pkill -KILL -f "containerd-shim.*$NODES_DIR" 2>/dev/null || true
  # Bind mounts the kubelets and containerds made under our directories, deepest first.
  for m in $(awk -v d="$NODES_DIR" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for m in $(awk '$2 ~ "^/run/containerd/io.containerd" || $2 ~ "^/run/netns/cni-" {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for z in "${ZONES[@]}"; do
    ip link delete "$(bridge_name "$z")" 2>/dev/null || true
    cgroup_remove "$(cgroup_name "$z")"
  done
  # The kubelets link every container log into /var/log/containers (a fixed path): remove our
  # links only, and the directory if nothing else uses it.
  local link
  for link in /var/log/containers/*.log; do
    if [[ -L $link && $(readlink "$link") == "$NODES_DIR"/* ]]; then rm -f "$link"; fi
  done
  rmdir /var/log/containers 2>/dev/null || true
  restore_sysctls
  rm -rf "$NODES_DIR"
  log "real nodes down"
}

remove_kube_chains() {
  local table chain
  for table in filter nat mangle; do
    # jumps from the built-in chains first, then the chains themselves
    { iptables -t "$table" -S 2>/dev/null || true; } \
      | { grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .* -j KUBE-' || true; } \
      | sed 's/^-A/-D/' | while read -r rule; do
        # shellcheck disable=SC2086
        iptables -t "$table" $rule 2>/dev/null || true
      done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

case ${1:-} in
  up) do_up ;;
  down) do_down ;;
  status) real_nodes_ready ;;
  stop-kubelet) stop_pidfile "$(node_dir "${2:?zone}")/kubelet.pid" ;;
  start-kubelet) start_kubelet "${2:?zone}" ;;
  *) echo "usage: $0 up|down|status|stop-kubelet <zone>|start-kubelet <zone>" >&2; exit 2 ;;
esac
