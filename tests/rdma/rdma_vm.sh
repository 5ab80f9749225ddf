#!/usr/bin/env bash
# rdma_vm.sh — real RDMA (Soft-RoCE, rdma_rxe) for moerack's tests, in QEMU guests booting Debian's
# own kernel from a small initramfs. Adapted from ../shared/rdma-vm/rdma-vm-recipe.sh.
#
#   rdma_vm.sh build DIR                       download + extract the guest packages (cached in DIR),
#                                              build the initramfs; exit 77 (skip) without /dev/kvm
#   rdma_vm.sh xport-one DIR XPORT_TEST        transport tests in one guest (rxe loopback)
#   rdma_vm.sh xport-two DIR XPORT_TEST        transport tests between two guests (UDP link on 127.0.0.1)
#   rdma_vm.sh cluster DIR BUILD_DIR MODEL GOLDEN  coordinator in guest 1, two workers in guest 2:
#                                              the same logits over RDMA as over TCP and single-process
#                                              (BUSY=1: rdma only, cluster.rdma_busy_poll = true)
#   rdma_vm.sh bench DIR BUILD_DIR             `moerack bench transport` (rdma, tcp) beside perftest's
#                                              ib_write_lat / ib_write_bw, two guests, REPS times
#                                              (BUSY=1: also rdma with busy polling; BUSY=2: and
#                                              busy polling on the completion queue alone;
#                                              SIZES="64 256 ...": fewer sizes, x4 steps from 64;
#                                              guest NIC MTU 4200 = IB MTU 4096 unless NIC_MTU says)
#   rdma_vm.sh run-one DIR SCRIPT [FILE...]    any script in one guest (debugging)
#   rdma_vm.sh run-two DIR SCRIPT [FILE...]    any script in both guests of the two-node link
#
# Guests run under TCG (software emulation) unless the host has real hardware virtualisation
# (vmx/svm and not kvm_pvm; see the recipe's notes). All traffic stays on this machine: one guest's
# NIC sits on an isolated QEMU hub; two guests are linked by a QEMU UDP socket on 127.0.0.1.
set -euo pipefail

cmd=${1:?usage: rdma_vm.sh build|xport-one|xport-two|cluster|bench DIR ...}
W=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)
MEM=${MEM:-1024}
TIMEOUT=${TIMEOUT:-600}
PORT=${PORT:-$((41000 + RANDOM % 4000))}
# Guest NIC MTU, set before rxe0 is created: rxe takes its IB MTU from it (the largest of 256 ... 4096
# that fits in MTU - 80 header bytes), so 4200 gives IB MTU 4096 for rdma_cm and perftest alike; at
# Ethernet's 1500 it is 1024 and a 1 KiB message plus our 40-byte header needs two packets. The QEMU
# socket netdev carries the large frames (one UDP datagram each on 127.0.0.1). `bench` defaults to
# 4200; the tests keep 1500, where bulk transfers between the guests run ~3x faster (fewer drops of
# the UDP link, each costing an rxe retransmit timeout): 28 s vs 85 s for xport-two.
NIC_MTU_BENCH=${NIC_MTU:-4200}
NIC_MTU=${NIC_MTU:-1500}
# Bump when the guest's /init changes, so a cached initramfs is rebuilt.
KIT_VERSION=2

GUEST_PKGS="libc6 libgcc-s1 busybox-static
  libibverbs1 ibverbs-providers librdmacm1 libibumad3 ibverbs-utils rdmacm-utils perftest
  libnl-3-200 libnl-route-3-200 libpci3 libudev1
  iproute2 libbpf1 libbsd0 libmd0 libcap2 libdb5.3 libelf1 zlib1g libmnl0 libselinux1 libpcre2-8-0
  libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libssl3 libxtables12
  libjansson4 libconfig9 libprotobuf-c1 libmicrohttpd12 libutf8proc2 libgnutls30 libp11-kit0 libidn2-0
  libunistring2 libtasn1-6 libnettle8 libhogweed6 libgmp10 libffi8"
GUEST_MODS="virtio_pci virtio_net 9pnet_virtio 9p crc32_generic crc32-pclmul
  rdma_rxe ib_uverbs rdma_ucm ib_umad ib_cm iw_cm rdma_cm"

log() { echo "[rdma_vm $(date +%T)] $*" >&2; }

need_kvm() {
  if [ ! -e /dev/kvm ]; then
    echo "SKIP: /dev/kvm is absent on this machine; the RDMA tests need it (see tests/rdma/README.md)"
    exit 77
  fi
}

host_tools() {
  local t
  for t in qemu-system-x86_64 cpio depmod modprobe file objdump python3 apt-get dpkg; do
    command -v $t >/dev/null || { echo "rdma_vm: $t is missing: run deploy/install-deps.sh"; exit 1; }
  done
}

build() {
  need_kvm
  host_tools
  local stamp="$W/packages.txt" want
  want="kit-$KIT_VERSION $(echo $GUEST_PKGS $GUEST_MODS | tr ' ' '\n' | sort | tr '\n' ' ')"
  if [ -f "$W/initrd.img" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "cached initramfs in $W"
    return 0
  fi
  mkdir -p "$W/debs"
  ( cd "$W/debs"
    local kpkg
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    log "downloading $kpkg and the guest packages"
    apt-get download -q $kpkg $GUEST_PKGS 2>&1 | (grep -v unsandboxed || true) | tail -1 )
  rm -rf "$W/root"; mkdir -p "$W/root"
  for d in "$W"/debs/*.deb; do dpkg -x "$d" "$W/root"; done
  local kver; kver=$(ls "$W/root/lib/modules" | sort | tail -1)
  depmod -b "$W/root" "$kver"
  cp "$W/root/boot/vmlinuz-$kver" "$W/vmlinuz"
  echo "$kver" > "$W/kver"
  python3 - "$W/vmlinuz" "$W/vmlinux" <<'PY' || rm -f "$W/vmlinux"
import lzma, sys
d = open(sys.argv[1], 'rb').read()
off = d.find(b'\xfd7zXZ\x00')
out = lzma.LZMADecompressor().decompress(d[off:])
assert out[:4] == b'\x7fELF'
open(sys.argv[2], 'wb').write(out)
PY
  initramfs "$kver"
  echo "$want" > "$stamp"
  rm -rf "$W/root"   # 440 MB; the initramfs and kernel are what the runs need
}

initramfs() {
  local kver=$1 R="$W/root" I="$W/irfs"
  rm -rf "$I"; mkdir -p "$I"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,usr/lib,etc,dev,proc,sys,tmp,mnt,run}
  cp -a "$R"/bin/. "$I/bin/"; cp -a "$R"/sbin/. "$I/sbin/"
  cp -a "$R"/usr/bin/. "$I/usr/bin/"; cp -a "$R"/usr/sbin/. "$I/usr/sbin/"
  cp -a "$R"/lib/x86_64-linux-gnu "$I/lib/"; cp -a "$R"/lib64/. "$I/lib64/"
  cp -a "$R"/usr/lib/x86_64-linux-gnu "$I/usr/lib/"
  rm -rf "$I"/usr/lib/x86_64-linux-gnu/gconv
  cp -a "$R"/etc/libibverbs.d "$R"/etc/iproute2 "$I/etc/"
  echo 'root:x:0:0:root:/:/bin/sh' > "$I/etc/passwd"; echo 'root:x:0:' > "$I/etc/group"
  echo '127.0.0.1 localhost' > "$I/etc/hosts"
  local m f
  for m in $GUEST_MODS; do
    modprobe -d "$R" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | sort -u | while read -r f; do
    mkdir -p "$I$(dirname "${f#$R}")"; cp "$f" "$I${f#$R}"
  done
  cp "$R/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$I/lib/modules/$kver/"
  depmod -b "$I" "$kver"
  cat > "$I/init" <<'INIT'
#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bb
/bin/busybox mkdir -p /bb /proc /sys /dev /tmp /mnt /run
/bin/busybox --install -s /bb
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /tmp
ulimit -l unlimited
for x in $(cat /proc/cmdline); do
  case "$x" in rdmavm.*=*) k=${x%%=*}; k=${k#rdmavm.}; eval "RV_$k=\"${x#*=}\"";; esac
done
: ${RV_name:=vm} ${RV_ip:=10.0.0.1/24} ${RV_mtu:=1500}
export RV_name RV_ip RV_mtu
echo "RDMAVM: init-start"
for m in virtio_pci virtio_net 9pnet_virtio 9p crc32_generic crc32-pclmul rdma_rxe ib_uverbs rdma_ucm ib_umad; do
  modprobe $m || echo "RDMAVM: modprobe $m FAILED"
done
ip link set lo up
NIC=$(ls /sys/class/net | grep -v '^lo$' | head -1)
ip link set dev "$NIC" mtu "$RV_mtu" || echo "RDMAVM: mtu $RV_mtu on $NIC FAILED"
ip addr add "$RV_ip" dev "$NIC"; ip link set "$NIC" up
rdma link add rxe0 type rxe netdev "$NIC" && echo "RDMAVM: rxe0 on $NIC ($RV_ip, mtu $RV_mtu)"
rc=0
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt 2>/dev/null && [ -f /mnt/run.sh ]; then
  cd /mnt; sh /mnt/run.sh > /dev/console 2>&1 </dev/null; rc=$?; cd /
  echo "$rc" > /mnt/rc.$RV_name; sync
fi
echo "RDMAVM_RC=$rc"
poweroff -f
INIT
  chmod +x "$I/init"
  local missing=0 lib
  for f in "$I"/usr/bin/*; do
    file -L "$f" 2>/dev/null | grep -q 'dynamically linked' || continue
    for lib in $(objdump -p "$f" | awk '/NEEDED/{print $2}'); do
      [ -e "$I/lib/x86_64-linux-gnu/$lib" ] || [ -e "$I/usr/lib/x86_64-linux-gnu/$lib" ] || { log "missing $lib for $f"; missing=1; }
    done
  done
  (cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$W/initrd.img"
  rm -rf "$I"
  log "initramfs $(du -h "$W/initrd.img" | cut -f1) (missing libraries: $missing)"
}

accel() {
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
    echo "-enable-kvm -cpu host"
  else
    echo "-accel tcg,thread=multi -cpu max"
  fi
}

# run_vm SHARE NAME IP SMP NETDEV... : boots one guest; returns SHARE/run.sh's exit code (125: none)
run_vm() {
  local share=$1 name=$2 ip=$3 smp=$4; shift 4
  local kernel="$W/vmlinux"; [ -f "$kernel" ] || kernel="$W/vmlinuz"
  rm -f "$share/rc.$name" "$share/$name.log"
  # shellcheck disable=SC2046
  timeout "$TIMEOUT" qemu-system-x86_64 $(accel) -m "$MEM" -smp "$smp" -machine q35 -nodefaults \
    -no-user-config -display none -no-reboot -kernel "$kernel" -initrd "$W/initrd.img" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 rdmavm.name=$name rdmavm.ip=$ip rdmavm.mtu=$NIC_MTU" \
    -serial "file:$share/$name.log" \
    -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" "$@" || true
  [ -f "$share/rc.$name" ] && return "$(cat "$share/rc.$name")" || return 125
}

one() { # one SHARE : a single guest, NIC on an isolated hub
  run_vm "$1" single 10.0.0.1/24 2 -netdev hubport,id=n0,hubid=0 \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01
}

two() { # two SHARE : node1 10.0.0.1 and node2 10.0.0.2 on a UDP socket link
  local share=$1 rc1=0 rc2=0
  rm -f "$share"/sync.*
  run_vm "$share" node1 10.0.0.1/24 "${SMP:-1}" -netdev "socket,id=n0,udp=127.0.0.1:$((PORT+1)),localaddr=127.0.0.1:$PORT" \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01 & local p1=$!
  sleep 0.5
  run_vm "$share" node2 10.0.0.2/24 "${SMP:-1}" -netdev "socket,id=n0,udp=127.0.0.1:$PORT,localaddr=127.0.0.1:$((PORT+1))" \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02 & local p2=$!
  wait $p1 || rc1=$?; wait $p2 || rc2=$?
  log "node1 rc=$rc1 node2 rc=$rc2"
  return $(( rc1 || rc2 ))
}

show() { tr -d '\r' < "$1" | grep -v -E '^RDMAVM: (init-start)' || true; }

check_built() { [ -f "$W/initrd.img" ] || { need_kvm; echo "no initramfs in $W: run build first"; exit 1; }; }

case "$cmd" in
build) build ;;
xport-one)
  check_built; bin=${3:?XPORT_TEST}
  S="$W/share-one"; rm -rf "$S"; mkdir -p "$S"; cp "$bin" "$S/"
  cat > "$S/run.sh" <<'RUN'
IP=${RV_ip%/*}; fail=0
ibv_devices | grep -q rxe0 || { echo "no rxe0 device"; exit 1; }
echo "== event-driven completions"
for t in sizes order slow disconnect hostile-version hostile-slot hostile-length hostile-credit \
         hostile-region-offer; do
  ./xport_test --transport rdma --addr $IP --port 7480 $t || fail=$((fail+1))
done
# 16 connections in one 1 GiB guest: 256 KiB slots (each connection registers 2 x 4 slots)
./xport_test --transport rdma --addr $IP --port 7480 --max-message 262144 peers || fail=$((fail+1))
echo "== receive regions: payloads written straight into the receiver's memory (zero-copy)"
for t in sizes order slow hostile-credit hostile-region-write hostile-region-length; do
  ./xport_test --transport rdma --addr $IP --port 7482 --region host $t || fail=$((fail+1))
done
for t in peers mixed; do
  ./xport_test --transport rdma --addr $IP --port 7482 --region host --max-message 262144 $t || fail=$((fail+1))
done
echo "== regions handed over as dmabufs: rxe registers none, so host staging, and the labels say so"
./xport_test --transport rdma --addr $IP --port 7483 --region dmabuf dmabuf-fallback || fail=$((fail+1))
echo "== busy polling: memory-polled messages (plain RDMA WRITE, head word + trailer) where no region"
for t in sizes order slow disconnect hostile-mem hostile-credit poll-mixed; do
  ./xport_test --transport rdma --addr $IP --port 7481 --busy-poll $t || fail=$((fail+1))
done
./xport_test --transport rdma --addr $IP --port 7481 --busy-poll --max-message 262144 peers || fail=$((fail+1))
./xport_test --transport rdma --addr $IP --port 7481 poll-mixed || fail=$((fail+1))   # the client polls
./xport_test --transport rdma --addr $IP --port 7481 --busy-poll --region host sizes || fail=$((fail+1))
exit $fail
RUN
  rc=0; one "$S" || rc=$?; show "$S/single.log"; exit $rc ;;
xport-two)
  check_built; bin=${3:?XPORT_TEST}
  S="$W/share-two"; rm -rf "$S"; mkdir -p "$S"; cp "$bin" "$S/"
  cat > "$S/run.sh" <<'RUN'
SRV=10.0.0.1; fail=0; n=0
waitfor() { i=0; until [ -e "/mnt/$1" ]; do i=$((i+1)); [ $i -ge 900 ] && return 1; sleep 0.2; done; }
# TEST, TEST:region (both sides give each connection a receive region: zero-copy, split writes) or
# TEST:busy (both sides busy-poll: memory-polled messages)
for tr in sizes order slow peers sizes:region slow:region sizes:busy order:busy slow:busy; do
  n=$((n+1)); t=${tr%%:*}; mm=16777216; [ $t = peers ] && mm=262144
  reg=; [ "$tr" = $t:region ] && reg="--region host"; [ "$tr" = $t:busy ] && reg="--busy-poll"
  if [ "$RV_name" = node1 ]; then
    ./xport_test --transport rdma --role server --addr $SRV --port $((7500+n)) --max-message $mm $reg $t > /tmp/s.log 2>&1 & p=$!
    sleep 2; touch /mnt/sync.$n; wait $p || fail=$((fail+1)); cat /tmp/s.log
  else
    waitfor sync.$n || { fail=$((fail+1)); continue; }
    [ "$tr" = $t:region ] && echo "== $t, with receive regions on both sides"
    [ "$tr" = $t:busy ] && echo "== $t, busy polling on both sides (memory-polled messages)"
    ./xport_test --transport rdma --role client --addr $SRV --port $((7500+n)) --max-message $mm $reg $t || fail=$((fail+1))
  fi
done
echo "$RV_name FAILURES=$fail"; exit $fail
RUN
  rc=0; two "$S" || rc=$?; show "$S/node1.log"; show "$S/node2.log"; exit $rc ;;
cluster)
  check_built; bd=${3:?BUILD_DIR} model=${4:?MODEL} golden=${5:?GOLDEN}
  S="$W/share-cluster"; rm -rf "$S"; mkdir -p "$S/bin" "$S/out"
  cp "$bd"/cli/moerack "$bd"/coordinator/moerack-coordinator "$bd"/worker/moerack-worker "$S/bin/"
  cp -r "$model" "$S/model"
  # the golden prompts, one id list per line
  python3 - "$golden/golden.json" > "$S/prompts.txt" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print(c["name"], ",".join(str(i) for i in c["prompt"]))
PY
  # BUSY=1: rdma with cluster.rdma_busy_poll (memory-polled replies, spinning workers) only
  if [ "${BUSY:-0}" = 1 ]; then echo rdma; touch "$S/busy"; else echo rdma tcp; fi > "$S/transports"
  for t in rdma tcp; do cat > "$S/$t.cfg" <<CFG
cluster = { name = "vm-$t"; model = "/mnt/model"; transport = "$t";$([ "${BUSY:-0}" = 1 ] && echo " rdma_busy_poll = true;") };
coordinator = { listen = "10.0.0.1:7400"; threads = 1; max_batch_tokens = 512; max_seqs = 4;
                max_context = 2048; expert_timeout_ms = 60000; worker_timeout_ms = 60000; };
workers = ( { name = "w0"; data_listen = "10.0.0.2:$([ $t = rdma ] && echo 7410 || echo 7420)"; threads = 1; },
            { name = "w1"; data_listen = "10.0.0.2:$([ $t = rdma ] && echo 7411 || echo 7421)"; threads = 1; } );
CFG
  done
  cat > "$S/run.sh" <<'RUN'
B=/mnt/bin; fail=0
waitfor() { i=0; until [ -e "/mnt/$1" ]; do i=$((i+1)); [ $i -ge 3000 ] && return 1; sleep 0.2; done; }
if [ "$RV_name" = node2 ]; then          # the two workers, for one transport after the other
  for t in $(cat /mnt/transports); do
    $B/moerack-worker --config /mnt/$t.cfg --name w0 > /mnt/out/$t-w0.log 2>&1 & a=$!
    $B/moerack-worker --config /mnt/$t.cfg --name w1 > /mnt/out/$t-w1.log 2>&1 & b=$!
    waitfor done.$t; kill $a $b; wait
  done
  exit 0
fi
# node1: single process first, then the coordinator for each transport
while read -r name ids; do
  $B/moerack run --model /mnt/model --ids $ids --greedy 8 --dump-logits /mnt/out/single-$name.f32 > /mnt/out/single-$name.ids || fail=$((fail+1))
done < /mnt/prompts.txt
for t in $(cat /mnt/transports); do
  $B/moerack-coordinator --config /mnt/$t.cfg > /mnt/out/$t-coordinator.log 2>&1 & c=$!
  i=0; until $B/moerack status --coordinator 10.0.0.1:7400 > /dev/null 2>&1; do i=$((i+1)); [ $i -ge 600 ] && break; sleep 0.5; done
  $B/moerack status --coordinator 10.0.0.1:7400 | tee /mnt/out/$t-status.txt || fail=$((fail+1))
  if [ $t = rdma ]; then    # the workers offer receive regions: requests land there, zero-copy
    if [ "$(grep -c ' rdma/host-region ' /mnt/out/$t-status.txt)" = 2 ]; then
      echo "PASS status: both workers receive requests in their own memory (rdma/host-region)"
    else
      echo "FAIL status: the workers' XPORT is not rdma/host-region"; fail=$((fail+1))
    fi
  fi
  while read -r name ids; do
    $B/moerack run --coordinator 10.0.0.1:7400 --ids $ids --greedy 8 --dump-logits /mnt/out/$t-$name.f32 > /mnt/out/$t-$name.ids || fail=$((fail+1))
    if cmp -s /mnt/out/$t-$name.f32 /mnt/out/single-$name.f32 && cmp -s /mnt/out/$t-$name.ids /mnt/out/single-$name.ids; then
      echo "PASS $name: cluster over $t gives the single-process logits and ids bit for bit"
    else
      echo "FAIL $name: cluster over $t differs from the single process"; fail=$((fail+1))
    fi
  done < /mnt/prompts.txt
  if [ $t = rdma ] && [ -e /mnt/busy ]; then  # replies to the coordinator: memory-polled
    if [ "$(grep -c 'memory-polled messages to this side' /mnt/out/rdma-coordinator.log)" = 2 ]; then
      echo "PASS busy poll: the coordinator polls both workers' replies in memory"
    else
      echo "FAIL busy poll: the coordinator does not poll both workers' replies in memory"; fail=$((fail+1))
    fi
  fi
  kill $c; wait $c; touch /mnt/done.$t
done
exit $fail
RUN
  rc=0; two "$S" || rc=$?; show "$S/node1.log"; exit $rc ;;
bench)
  check_built; bd=${3:?BUILD_DIR}; reps=${REPS:-3}; NIC_MTU=$NIC_MTU_BENCH
  S="$W/share-bench"; rm -rf "$S"; mkdir -p "$S"; cp "$bd"/cli/moerack "$S/"
  echo "$reps" > "$S/reps"; [ "${BUSY:-0}" -ge 1 ] && touch "$S/busy"; [ "${BUSY:-0}" = 2 ] && touch "$S/busy-cq"
  echo "${SIZES:-64 256 1024 4096 16384 65536 262144 1048576 4194304 16777216}" > "$S/sizes"
  cat > "$S/run.sh" <<'RUN'
SRV=10.0.0.1; n=0
waitfor() { i=0; until [ -e "/mnt/$1" ]; do i=$((i+1)); [ $i -ge 1500 ] && return 1; sleep 0.2; done; }
# perftest can hang under emulation (a lost packet at the end of a run): the client commands carry
# a timeout too, so one bad run costs two minutes, not the rest of the bench
step() { # step N SERVER_CMD CLIENT_CMD
  n=$1
  if [ "$RV_name" = node1 ]; then
    eval "timeout 300 $2" > /tmp/srv.log 2>&1 & p=$!; sleep 1; touch /mnt/sync.$n; wait $p
  else
    waitfor sync.$n && { eval "$3" || echo "step $n failed"; }
  fi
  [ "$RV_name" = node1 ] && waitfor done.$n; [ "$RV_name" = node2 ] && touch /mnt/done.$n
}
SIZES=$(cat /mnt/sizes); for s in $SIZES; do MAX=$s; done
[ "$RV_name" = node2 ] && echo "# $(ip -o link show | awk '$2 != "lo:" {print $2, $4, $5; exit}') rxe0 $(ibv_devinfo -d rxe0 | awk '/active_mtu/ {print "active_mtu", $2; exit}')"
B="./moerack bench transport --seconds 1 --max $MAX"
for rep in $(seq 1 $(cat /mnt/reps)); do
  b=$((rep*100))
  step $((b+1)) "$B --transport rdma --role server --addr $SRV --port 7601" \
    "echo '== moerack rdma rep $rep'; $B --transport rdma --role client --addr $SRV --port 7601"
  [ -e /mnt/busy ] && step $((b+2)) "$B --transport rdma --role server --addr $SRV --port 7602 --busy-poll" \
    "echo '== moerack rdma-busy-poll rep $rep'; $B --transport rdma --role client --addr $SRV --port 7602 --busy-poll"
  [ -e /mnt/busy-cq ] && step $((b+4)) "$B --transport rdma --role server --addr $SRV --port 7604 --busy-cq" \
    "echo '== moerack rdma-busy-cq rep $rep'; $B --transport rdma --role client --addr $SRV --port 7604 --busy-cq"
  step $((b+3)) "$B --transport tcp --role server --addr $SRV --port 7603" \
    "echo '== moerack tcp rep $rep'; $B --transport tcp --role client --addr $SRV --port 7603"
  # perftest's clock, checked: ib_write_lat with 500 and 4000 iterations timed by the guest's wall
  # clock; the extra time / 7000 half round trips is the true mean one-way latency
  k=60
  for s in $SIZES; do
    [ $s -gt 4096 ] && break
    for it in 500 4000; do
      k=$((k+1))
      step $((b+k)) "ib_write_lat -d rxe0 -x 1 -F -s $s -n $it" \
        "t0=\$(cut -d' ' -f1 /proc/uptime); timeout 120 ib_write_lat -d rxe0 -x 1 -F -s $s -n $it $SRV > /tmp/cal.log; t1=\$(cut -d' ' -f1 /proc/uptime); echo \"== perftest wall-clock n=$it rep $rep size $s: \$t0 \$t1\"; grep -A1 t_typical /tmp/cal.log | tail -1"
    done
  done
  # perftest, one size per run: iterations scaled so each moves about as much data as ours
  k=10
  for s in $SIZES; do
    k=$((k+1)); it=$((16777216 / s)); [ $it -gt 2000 ] && it=2000; [ $it -lt 5 ] && it=5
    P="-d rxe0 -x 1 -F -s $s -n $it"
    step $((b+k)) "ib_write_lat $P" "echo '== perftest ib_write_lat rep $rep size $s'; timeout 120 ib_write_lat $P $SRV"
    k=$((k+1)); itb=$it
    P="-d rxe0 -x 1 -F -s $s -n $itb"
    step $((b+k)) "ib_write_bw $P" "echo '== perftest ib_write_bw rep $rep size $s'; timeout 120 ib_write_bw $P $SRV"
  done
done
exit 0
RUN
  rc=0; two "$S" || rc=$?; show "$S/node2.log" | tee "$W/bench-$(date +%Y%m%d-%H%M%S).log"; exit $rc ;;
run-two) # run-two DIR SCRIPT [FILE...] : the same in both guests (RV_name node1 / node2, linked as
         # for bench; NIC_MTU as for the tests unless set); node2's console is printed
  check_built; script=${3:?SCRIPT}; shift 3
  S="$W/share-dbg2"; rm -rf "$S"; mkdir -p "$S"; cp "$script" "$S/run.sh"; [ $# -gt 0 ] && cp "$@" "$S/"
  rc=0; two "$S" || rc=$?; show "$S/node2.log"; exit $rc ;;
run-one) # run-one DIR SCRIPT [FILE...] : a debugging aid; SCRIPT runs in /mnt beside the FILEs
  check_built; script=${3:?SCRIPT}; shift 3
  S="$W/share-dbg"; rm -rf "$S"; mkdir -p "$S"; cp "$script" "$S/run.sh"; [ $# -gt 0 ] && cp "$@" "$S/"
  rc=0; one "$S" || rc=$?; show "$S/single.log"; exit $rc ;;
*) echo "unknown command $cmd"; exit 2 ;;
esac
