#!/usr/bin/env bash
# Runs one program the way a container runtime runs a DaemonSet's container, without a runtime:
# the image as a read-only overlay of its layers, /proc (host pid namespace: not unshared), a
# read-only /sys, a minimal /dev, the pod's volumes, uid 0 with exactly the given capabilities
# (bounding, permitted and effective; inheritable and ambient empty) and no_new_privs, then exec.
# tests/deploy/test_image_runtime.py starts it inside the pod's network namespace as
#
#   nsenter --net=/run/netns/<pod> unshare --mount --propagation private -- \
#     pod_sandbox.sh --work DIR --layer DIR... [--bind SRC:DST:ro|rw]... [--tmpfs DST:SIZE]... \
#                    [--env K=V]... --caps cap_bpf,cap_perfmon,... -- /usr/bin/threadline ARGS...
#
# --layer: image layers, top first (overlayfs lowerdirs; no upper layer, so the root cannot be
# written, as with readOnlyRootFilesystem). --bind: a hostPath volume (recursive bind, like
# containerd's CRI mounts). --tmpfs: an emptyDir with medium Memory. Everything mounted here lives
# in the new mount namespace and goes away with its last process (the program).
# Needs root, util-linux (mount, unshare), capsh (libcap2-bin).
set -euo pipefail

work="" caps="" layers=() binds=() tmpfses=() envs=()
while (($#)); do
  case "$1" in
    --work) work="$2"; shift 2 ;;
    --layer) layers+=("$2"); shift 2 ;;
    --bind) binds+=("$2"); shift 2 ;;
    --tmpfs) tmpfses+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --caps) caps="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "pod_sandbox: unknown argument $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "pod_sandbox: no program to run" >&2; exit 2; }
if [[ -z "$work" || ${#layers[@]} -eq 0 || -z "$caps" ]]; then
  echo "pod_sandbox: --work, --layer and --caps are required" >&2
  exit 2
fi

# Mount points the runtime would create in the container's writable layer before it makes the
# root read-only: a layer of empty directories on top of the image's.
mounts_layer="$work/mountpoints"
mkdir -p "$mounts_layer"
for spec in "${binds[@]}" "${tmpfses[@]}"; do
  dst="${spec#*:}"; dst="${dst%%:*}"
  case "$dst" in /proc/*|/sys/*|/dev/*) ;; *) mkdir -p "$mounts_layer$dst" ;; esac
done

root="$work/rootfs"
mkdir -p "$root"
lower="$mounts_layer"
for l in "${layers[@]}"; do lower+=":$l"; done
mount -t overlay overlay -o "ro,lowerdir=$lower" "$root"

# /proc: a procfs of the host pid namespace (hostPID), with runc's read-only and masked paths.
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
for p in bus fs irq sys sysrq-trigger; do
  if [[ -e "$root/proc/$p" ]]; then
    mount --bind "$root/proc/$p" "$root/proc/$p"
    mount -o remount,bind,ro "$root/proc/$p"
  fi
done
for p in kcore keys latency_stats timer_list timer_stats sched_debug; do
  if [[ -f "$root/proc/$p" ]]; then mount --bind /dev/null "$root/proc/$p"; fi
done
for p in acpi scsi; do
  if [[ -d "$root/proc/$p" ]]; then mount -t tmpfs -o ro tmpfs "$root/proc/$p"; fi
done

# /dev: a small tmpfs with the usual character devices (no host devices: not privileged).
mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  touch "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/shm" "$root/dev/pts"
mount -t tmpfs -o nosuid,nodev,noexec,size=64m shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

# /sys: read-only, as for every container that is not privileged.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"

# Volumes, parents before children (as runtimes sort them).
mapfile -t ordered < <(
  for spec in "${binds[@]}"; do d="${spec#*:}"; d="${d%%:*}"; echo "$(tr -cd / <<<"$d" | wc -c) bind $spec"; done
  for spec in "${tmpfses[@]}"; do d="${spec%%:*}"; echo "$(tr -cd / <<<"$d" | wc -c) tmpfs $spec"; done
)
mapfile -t ordered < <(printf '%s\n' "${ordered[@]}" | sort -n -s -k1,1)
for line in "${ordered[@]}"; do
  read -r _depth kind spec <<<"$line"
  if [[ "$kind" == bind ]]; then
    IFS=: read -r src dst mode <<<"$spec"
    mount --rbind "$src" "$root$dst"
    if [[ "$mode" == ro ]]; then mount -o remount,bind,ro "$root$dst"; fi
  else
    IFS=: read -r dst size <<<"$spec"
    mount -t tmpfs -o "nosuid,nodev,mode=1777,size=$size" tmpfs "$root$dst"
  fi
done

# Every capability this kernel knows except the kept ones leaves the bounding set; then the
# permitted and effective sets become exactly the kept ones, inheritable and ambient empty.
last_cap="$(cat /proc/sys/kernel/cap_last_cap)"
drop=()
for ((i = 0; i <= last_cap; i++)); do
  name="$(capsh --decode="$(printf '%x' $((1 << i)))" | sed 's/.*=//')"
  [[ ",$caps," == *",$name,"* ]] || drop+=("$name")
done
drop_list="$(IFS=,; echo "${drop[*]}")"

# The container's environment only: what the image and the pod spec give.
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  HOSTNAME="$(hostname)" "${envs[@]}" \
  capsh --chroot="$root" --drop="$drop_list" --caps="$caps+ep" --inh= --noamb --no-new-privs \
  --shell="$1" -- "${@:2}"
