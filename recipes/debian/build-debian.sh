#!/usr/bin/env bash
# Build a Debian cloud-style disk offline: a real Debian (systemd, cloud-init, OpenSSH,
# Debian's cloud kernel) assembled by mmdebstrap from the Debian mirror this machine's apt
# is configured with, made bootable like the tiny guest (no loop mount).
#
#   build-debian.sh SUITE OUT_DIR        # SUITE: bookworm (Debian 12) or trixie (Debian 13)
#
# Writes OUT_DIR/disk.qcow2: a DOS label, a FAT boot partition (syslinux, the kernel, its
# initramfs) and an ext4 root found by UUID, which cloud-init grows to the disk's size.
# Like Debian's genericcloud image it has no key and no password: cloud-init lets users in
# (NoCloud seed). Needs root (mmdebstrap --mode=root) and: mmdebstrap fdisk dosfstools
# mtools syslinux syslinux-common e2fsprogs qemu-utils util-linux cpio xz-utils.
#
# The mirror is the one apt uses here (the Debian and Debian-Security entries of the apt
# sources; MINIVIRT_DEBIAN_MIRROR / MINIVIRT_DEBIAN_SECURITY_MIRROR override them).
# Downloaded packages are kept in ${MINIVIRT_DEBIAN_CACHE:-${XDG_CACHE_HOME:-~/.cache}/minivirt/debian},
# shared by builds running side by side (copied in under a shared lock, out under an
# exclusive one). Boot-speed choices (what a TCG guest spends its first ~30 s on) are
# commented where they are made.
set -euo pipefail
# shellcheck source=../lib/syslinux-disk.sh
. "$(dirname "$0")/../lib/syslinux-disk.sh"

suite=${1:?usage: build-debian.sh SUITE OUT_DIR}
out=${2:?usage: build-debian.sh SUITE OUT_DIR}
cache=${MINIVIRT_DEBIAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/minivirt/debian}
disk_mb=${DEBIAN_DISK_MB:-3072}
boot_mb=64

case "$suite" in
  bookworm|trixie|forky|sid) ;;
  *) echo "build-debian: unknown suite '$suite' (bookworm, trixie, forky or sid)" >&2; exit 2 ;;
esac
for tool in mmdebstrap apt-get sfdisk mkfs.vfat mcopy syslinux mkfs.ext4 qemu-img dd flock cpio gzip xz; do
  command -v "$tool" >/dev/null || {
    echo "build-debian: '$tool' is missing. Install: apt-get install mmdebstrap fdisk dosfstools mtools syslinux syslinux-common e2fsprogs qemu-utils util-linux cpio xz-utils" >&2
    exit 3
  }
done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || { echo "build-debian: syslinux-common's mbr.bin is missing: apt-get install syslinux-common" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "build-debian: mmdebstrap --mode=root needs root: run the build as root" >&2; exit 3; }

# --- the mirror: what this machine's apt uses ------------------------------------
repo_of() {  # the first repository URI of apt's sources whose label is $1
  apt-get indextargets --format '$(REPO_URI)' "Label: $1" 'Identifier: Packages' 2>/dev/null | head -1
}
mirror=${MINIVIRT_DEBIAN_MIRROR:-$(repo_of Debian)}
security=${MINIVIRT_DEBIAN_SECURITY_MIRROR:-$(repo_of Debian-Security)}
[ -n "$mirror" ] || {
  echo "build-debian: apt has no Debian mirror configured here; set MINIVIRT_DEBIAN_MIRROR to one (or run 'apt-get update')" >&2
  exit 3
}
sources=("deb $mirror $suite main" "deb $mirror $suite-updates main")
[ -n "$security" ] && [ "$suite" != sid ] && sources+=("deb $security $suite-security main")

packages=(
  systemd-sysv udev kmod dbus libpam-systemd systemd-resolved  # init, devices, DNS
  linux-image-cloud-amd64 initramfs-tools                      # Debian's cloud kernel
  busybox-static                                               # the boot initramfs (below)
  cloud-init cloud-guest-utils openssh-server sudo             # the cloud-image essentials
  iproute2 procps zstd locales ca-certificates
)

mkdir -p "$cache/debs"
exec 9>"$cache/.lock"
work=$(mktemp -d "${TMPDIR:-/tmp}/debian-build.XXXXXX")
# --one-file-system: a build killed outright can leave mmdebstrap's /proc, /sys mounts in the tree.
trap 'rm -rf --one-file-system "$work"' EXIT
root="$work/root"
mkdir "$root"

# What the tree gets besides its packages (the hooks below copy it in).
conf="$work/conf"
mkdir -p "$conf/cloud" "$conf/network"
cat > "$conf/cloud/99-minivirt.cfg" <<'CFG'
# minivirt: only the NoCloud seed (a CD-ROM labelled cidata) or nothing; no network probing.
datasource_list: [NoCloud, None]
# ed25519 and ecdsa host keys only: RSA costs seconds of a TCG guest's first boot.
ssh_genkeytypes: [ed25519, ecdsa]
# Debian's module lists without what has nothing to do on this image (snap, byobu, fan,
# landscape, lxd, rsyslog, grub, EC2/RightScale/RMC agents) and without printing every
# host key to the serial console: each module is imported by a Python that a TCG guest
# runs slowly.
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts,
                     set_hostname, update_hostname, update_etc_hosts, ca-certs, users-groups, ssh]
cloud_config_modules: [locale, set-passwords, apt-configure, timezone, runcmd]
cloud_final_modules: [package-update-upgrade-install, write-files-deferred, scripts-vendor, scripts-per-once,
                      scripts-per-boot, scripts-per-instance, scripts-user, final-message, power-state-change]
CFG
# Debian's initramfs-tools image in /boot is not what the disk boots (see "the boot
# partition's initramfs" below), but it stays a working one, and small: only what finds the
# root on virtio-blk and the seed's CD-ROM, instead of Debian's default (MODULES=most, ~30 MiB
# of modules). No swap: nothing to resume.
mkdir -p "$conf/initramfs"
printf 'MODULES=list\nCOMPRESS=zstd\nRESUME=none\n' > "$conf/initramfs/minivirt.conf"
printf '%s\n' virtio_pci virtio_blk virtio_net virtio_rng ata_piix sr_mod cdrom isofs > "$conf/initramfs/modules"
# The journal in memory only: no flush to disk at boot (the serial log keeps what a VM said).
mkdir -p "$conf/journald"
printf '[Journal]\nStorage=volatile\n' > "$conf/journald/minivirt.conf"
# Optimistic duplicate address detection (RFC 4429) for IPv6: DAD still runs, without the
# random wait of up to 1 s before it starts. networkd counts a link as configured only once its
# IPv6 link-local address has passed DAD, and wait-online (before cloud-init's network stage,
# and sshd on a first boot) waits for that, even with an IPv4 lease in hand.
mkdir -p "$conf/sysctl"
printf 'net.ipv6.conf.*.optimistic_dad = 1\n' > "$conf/sysctl/60-minivirt-optimistic-dad.conf"
cat > "$conf/network/90-dhcp.network" <<'NET'
# Any wired interface by DHCP (cloud-init may write its own, more specific config).
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET

# cloud-init's growpart module runs `growpart --dry-run DISK N` on every boot: a bash script of
# ~400 traced lines and dozens of forks (sfdisk, awk, sed...): 1.1 s of a quiet TCG boot, 4-5 s on
# a loaded host, on the way to SSH (cloud-init.service is ordered before sshd), only to answer
# NOCHANGE on every boot but the first of a grown disk. This wrapper, first in systemd's PATH, answers that dry run
# from sysfs when the partition already ends at the disk's end (within the 33 sectors growpart
# itself leaves, plus one), as growpart would (NOCHANGE, exit 1); anything else goes to the
# real growpart, so a disk made bigger is still grown by cloud-init as usual.
mkdir -p "$conf/sbin"
cat > "$conf/sbin/growpart" <<'GROW'
#!/bin/sh
# minivirt (recipes/debian/build-debian.sh): a quick NOCHANGE for `growpart --dry-run DISK N`
# when partition N already reaches the end of DISK; everything else runs /usr/bin/growpart.
if [ "$#" = 3 ] && [ "$1" = --dry-run ]; then
  disk=${2##*/}
  for part in /sys/class/block/"$disk"/"$disk"*; do
    [ -r "$part/partition" ] && read -r n < "$part/partition" && [ "$n" = "$3" ] || continue
    read -r total < "/sys/class/block/$disk/size" && read -r start < "$part/start" &&
      read -r size < "$part/size" || break
    if [ $((start + size)) -ge $((total - 34)) ]; then
      echo "NOCHANGE: partition $3 is size $size. it cannot be grown (it reaches the end of $2)"
      exit 1
    fi
    break
  done
fi
exec /usr/bin/growpart "$@"
GROW
chmod 755 "$conf/sbin/growpart"

# cloud-init's four stages are four Python processes, three of them on the way to SSH on a
# first boot; under TCG each spends ~2.5-6 s importing cloud-init before doing anything (~15 s
# of a first boot's ~34 s went to that). On bookworm (cloud-init 22.4; trixie's 25.x runs all
# stages in one process itself, cloud-init-main.service) minivirt-cloud-init-preload.service
# imports cloud-init once, early and alongside the rest of the boot, and each stage is a fork
# of it, run in the stage unit's own cgroup (guest/cloud-init-preload.py; the forks also read
# YAML with libyaml, and inherit answers asked once, see remember() there). cloud-init's console
# script, diverted in place of Debian's (dpkg-divert, so upgrades keep it), hands a stage to
# that service when it is there, and otherwise calls cloud-init's main itself (Debian's script
# finds its entry point through importlib.metadata: a scan of every installed distribution,
# ~0.8 s more per process): guest/cloud-init.py.
# cloud-init's systemd generator, which decides at every boot whether cloud-init runs, asks
# ds-identify first: ~1 s of an emulated CPU before systemd starts any unit (the longest
# generator by far) for an answer that is always yes on this image (its datasource list is
# set); guest/cloud-init-generator.sh keeps Debian's decision without it (bookworm's only).
guest=$(cd "$(dirname "$0")/guest" && pwd)

# sshd before cloud-init, on a boot of an instance cloud-init has already set up. Debian orders
# sshd after cloud-init's network stage, so that a new instance's host keys and authorized keys
# are in place first: on every later boot that costs two more Python processes and the wait for
# the network (~10 s of a TCG boot) before SSH answers. This unit starts sshd at once instead,
# only when the NoCloud seed's instance-id is the one cloud-init recorded (so cloud-init will
# change no key this boot) and the host keys are there; anything else (a new instance, no seed,
# a seed it cannot read) leaves the boot as Debian orders it. When ssh.service's turn comes,
# it takes over: sessions open meanwhile stay.
#
# On such a boot cloud-init's local stage is skipped too (bookworm's cloud-init, one process
# per stage): all it would do is find the seed's instance-id unchanged (so it applies no
# network config: NoCloud's network config is applied to a new instance only), but the network
# waits for it (it is ordered before network-pre.target), ~6 s of a TCG boot on the way to SSH.
# The network stage then trusts the instance cloud-init cached, as cloud-init does whenever
# its local stage did not run, and runs its per-boot modules as usual. A new instance, or any
# doubt, runs the local stage as Debian does.
mkdir -p "$conf/early-ssh"
cat > "$conf/early-ssh/known-instance" <<'SH'
#!/bin/sh
# minivirt (recipes/debian/build-debian.sh): exit 0 only if cloud-init already set this
# instance up: the NoCloud seed (a filesystem labelled cidata) says the instance-id that
# cloud-init recorded, and the SSH host keys exist. With --new, the opposite: exit 0 unless it
# did (so any doubt counts as a new instance). The answer is kept in /run for this boot.
# Used by minivirt-early-ssh.service and cloud-init-local.service (ExecCondition).
set -u
known() {
  read -r known 2>/dev/null < /var/lib/cloud/data/instance-id || return 1
  [ -n "$known" ] || return 1
  for key in /etc/ssh/ssh_host_*_key; do [ -s "$key" ] || return 1; done
  dev=$(blkid -l -o device -t LABEL=cidata 2>/dev/null || blkid -l -o device -t LABEL=CIDATA 2>/dev/null) || return 1
  [ -n "$dev" ] || return 1
  dir=$(mktemp -d /run/minivirt-seed.XXXXXX) || return 1
  mount -r "$dev" "$dir" 2>/dev/null || { rmdir "$dir"; return 1; }
  # instance-id: VALUE, plain or quoted (what a YAML meta-data file says; anything else: no match)
  seed=$(sed -n "/^instance-id:/{s/^instance-id:[[:space:]]*//;s/[[:space:]]*\$//;s/^[\"']\(.*\)[\"']\$/\1/;p;q;}" "$dir/meta-data" 2>/dev/null)
  umount "$dir" 2>/dev/null; rmdir "$dir" 2>/dev/null
  [ -n "$seed" ] && [ "$seed" = "$known" ]
}
answer=/run/minivirt/known-instance
if ! read -r it 2>/dev/null < "$answer"; then
  if known; then it=yes; else it=no; fi
  mkdir -p /run/minivirt && echo "$it" > "$answer.$$" && mv -f "$answer.$$" "$answer"
fi
if [ "${1-}" = --new ]; then [ "$it" != yes ]; else [ "$it" = yes ]; fi
SH
chmod 755 "$conf/early-ssh/known-instance"
printf '[Service]\nExecCondition=/usr/local/lib/minivirt/known-instance --new\n' > "$conf/early-ssh/local-stage.conf"
cat > "$conf/early-ssh/minivirt-early-ssh.service" <<'UNIT'
# minivirt (recipes/debian/build-debian.sh): sshd before cloud-init on a boot of an instance
# cloud-init has already set up; ssh.service takes over when its turn comes.
[Unit]
Description=OpenBSD Secure Shell server, early (an instance cloud-init already set up)
DefaultDependencies=no
After=systemd-remount-fs.service systemd-tmpfiles-setup.service
Before=ssh.service shutdown.target
Conflicts=shutdown.target
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run
ConditionPathExists=!/etc/cloud/cloud-init.disabled

[Service]
Type=notify
ExecCondition=/usr/local/lib/minivirt/known-instance
EnvironmentFile=-/etc/default/ssh
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
KillMode=process
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
Nice=-10

[Install]
WantedBy=sysinit.target
UNIT
# ssh.service: takes over from the early sshd (stops it first: both are in the boot's first
# transaction, where a Conflicts= would just drop the early one); no `sshd -t` first (sshd
# itself refuses a bad configuration, and says why, in the same start).
cat > "$conf/early-ssh/ssh-minivirt.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=-/bin/systemctl stop minivirt-early-ssh.service
Nice=-10
UNIT
# What leads to SSH and to cloud-init's end goes first when the emulated CPUs are short
# (systemd starts the rest of the boot alongside): cloud-init's stages and the network.
# systemd-resolved, whose start takes ~5 s of an emulated CPU alongside cloud-init-local and
# which nothing on that way waits for, goes last.
mkdir -p "$conf/units"
printf '[Service]\nNice=-10\n' > "$conf/units/nice.conf"
printf '[Service]\nNice=10\n' > "$conf/units/later.conf"
NICE_UNITS="cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service systemd-networkd.service"
LATER_UNITS="systemd-resolved.service"

# Generators with nothing to find on this image (no encrypted, integrity or verity volumes, no
# swap to resume from, no GPT, no systemd.run= or offline updates), each a process start of
# ~150 ms under TCG before systemd queues any unit. cloud-init's own generator stays (it
# honours /etc/cloud/cloud-init.disabled and cloud-init=disabled); its ds-identify probe of
# every cloud is not needed with the datasource list set below: policy "enabled".
MASKED_GENERATORS="systemd-cryptsetup-generator systemd-integritysetup-generator systemd-veritysetup-generator
  systemd-hibernate-resume-generator systemd-gpt-auto-generator systemd-system-update-generator systemd-run-generator"

# Units that do nothing useful in a minivirt VM, each a fork and exec (or a mount) that an
# emulated CPU makes slowly on the way to SSH: kernel modules loaded on demand anyway (drm:
# no display; efi_pstore and pstore: no EFI; loop, fuse, dm_mod load when first used), the
# debugging and huge-page mounts, e2scrub_reap (no LVM snapshots), binfmt_misc.
MASKED="modprobe@drm.service modprobe@efi_pstore.service modprobe@loop.service modprobe@fuse.service
  modprobe@dm_mod.service systemd-pstore.service dev-hugepages.mount sys-kernel-debug.mount
  sys-kernel-tracing.mount sys-fs-fuse-connections.mount e2scrub_reap.service
  proc-sys-fs-binfmt_misc.automount systemd-binfmt.service"

# The root's fstab, written before the initramfs is made (its fsck hook reads it). fsck pass 0:
# no fsck of the root at boot (the initramfs's and systemd-fsck-root's: process starts an
# emulated CPU makes slowly); ext4's journal replays at mount anyway, and mkfs.ext4 sets no
# mount-count or interval check.
uuid=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 rw,discard,errors=remount-ro 0 0\n' "$uuid" > "$conf/fstab"

# The hooks' $1 is the tree; they see these through the environment (and fd 9, the lock).
export DEBS="$cache/debs" CONF="$conf" GUEST="$guest" MASKED MASKED_GENERATORS NICE_UNITS LATER_UNITS
# shellcheck disable=SC2016
mmdebstrap --mode=root --variant=minbase --format=directory --skip=download/empty,essential/unlink \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='APT::Install-Recommends "false"' \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"; flock -s 9; for f in "$DEBS"/*.deb; do [ -e "$f" ] && cp "$f" "$1/var/cache/apt/archives/"; done; flock -u 9' \
  --customize-hook='flock -x 9; for f in "$1"/var/cache/apt/archives/*.deb; do n=${f##*/}; [ -e "$DEBS/$n" ] || { cp "$f" "$DEBS/.$n.tmp" && mv "$DEBS/.$n.tmp" "$DEBS/$n"; }; done; flock -u 9; rm -f "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook='cp "$CONF/cloud/99-minivirt.cfg" "$1/etc/cloud/cloud.cfg.d/"; cp "$CONF/network/90-dhcp.network" "$1/etc/systemd/network/"; cp "$CONF/sysctl/60-minivirt-optimistic-dad.conf" "$1/etc/sysctl.d/"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-resolved' \
  --customize-hook='ln -sf ../run/systemd/resolve/stub-resolv.conf "$1/etc/resolv.conf"' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer' \
  --customize-hook='chroot "$1" systemctl mask $MASKED' \
  --customize-hook='cp "$CONF/fstab" "$1/etc/fstab"' \
  --customize-hook='cp "$CONF/sbin/growpart" "$1/usr/local/sbin/growpart"' \
  --customize-hook='chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/bin/cloud-init.distrib --add /usr/bin/cloud-init; install -m 755 "$GUEST/cloud-init.py" "$1/usr/bin/cloud-init"' \
  --customize-hook='echo "policy: enabled" > "$1/etc/cloud/ds-identify.cfg"; mkdir -p "$1/etc/systemd/system-generators"; for g in $MASKED_GENERATORS; do ln -s /dev/null "$1/etc/systemd/system-generators/$g"; done' \
  --customize-hook='mkdir -p "$1/usr/local/lib/minivirt" "$1/etc/systemd/system/ssh.service.d"; cp "$CONF/early-ssh/known-instance" "$1/usr/local/lib/minivirt/"; cp "$CONF/early-ssh/minivirt-early-ssh.service" "$1/etc/systemd/system/"; cp "$CONF/early-ssh/ssh-minivirt.conf" "$1/etc/systemd/system/ssh.service.d/minivirt.conf"; chroot "$1" systemctl enable minivirt-early-ssh.service' \
  --customize-hook='[ -e "$1/lib/systemd/system/cloud-init-main.service" ] || { mkdir -p "$1/etc/systemd/system/cloud-init-local.service.d"; cp "$CONF/early-ssh/local-stage.conf" "$1/etc/systemd/system/cloud-init-local.service.d/minivirt-known-instance.conf"; install -m 755 "$GUEST/cloud-init-preload.py" "$1/usr/local/lib/minivirt/cloud-init-preload"; cp "$GUEST/minivirt-cloud-init-preload.service" "$1/etc/systemd/system/"; chroot "$1" systemctl enable minivirt-cloud-init-preload.service; install -m 755 "$GUEST/cloud-init-generator.sh" "$1/etc/systemd/system-generators/cloud-init-generator"; }' \
  --customize-hook='for u in $NICE_UNITS; do mkdir -p "$1/etc/systemd/system/$u.d"; cp "$CONF/units/nice.conf" "$1/etc/systemd/system/$u.d/minivirt-nice.conf"; done; for u in $LATER_UNITS; do mkdir -p "$1/etc/systemd/system/$u.d"; cp "$CONF/units/later.conf" "$1/etc/systemd/system/$u.d/minivirt-nice.conf"; done' \
  --customize-hook='cp "$CONF/initramfs/minivirt.conf" "$1/etc/initramfs-tools/conf.d/"; cp "$CONF/initramfs/modules" "$1/etc/initramfs-tools/modules"; chroot "$1" update-initramfs -u -k all' \
  --customize-hook='mkdir -p "$1/etc/systemd/journald.conf.d"; cp "$CONF/journald/minivirt.conf" "$1/etc/systemd/journald.conf.d/"; rm -rf "$1/var/log/journal"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='echo debian > "$1/etc/hostname"; printf "127.0.0.1 localhost\n127.0.1.1 debian\n::1 localhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"' \
  --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
  --customize-hook='sed -i "s/^# *en_US.UTF-8/en_US.UTF-8/" "$1/etc/locale.gen"; chroot "$1" locale-gen >/dev/null; echo LANG=C.UTF-8 > "$1/etc/default/locale"' \
  "$suite" "$root" "${sources[@]}"

# Old package versions of the cache, not used by this build nor newer: removed now and
# then (an exclusive lock: nobody is copying them in).
flock -x 9
find "$cache/debs" -name '*.deb' -mtime +30 -delete
flock -u 9

kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -1)")
[ -f "$root/boot/vmlinuz-$kver" ] && [ -f "$root/boot/initrd.img-$kver" ] || {
  echo "build-debian: the tree has no kernel or initramfs for $kver" >&2; exit 1; }

# --- the boot partition's initramfs -------------------------------------------------
# Debian's initramfs-tools image (kept in /boot, small as set above) runs udev, a coldplug and
# its shell scripts on the emulated CPU: ~3.5 s from /init to the root mounted here, of a
# first boot's ~27 s. The disk boots this one instead: busybox (the tree's busybox-static),
# guest/initramfs-init and the modules below, what they need first (as modules.dep says;
# compressed modules unpacked here: busybox's insmod hands the kernel raw ELF): the root's
# device, then the seed's CD-ROM, the network and the RNG (all loaded before the root is
# left, so cloud-init never looks before the seed is there).
# ~1.5 s from /init to the root mounted, most of it the drivers' own probing.
ird="$work/initramfs"
mkdir -p "$ird/bin" "$ird/dev" "$ird/proc" "$ird/newroot" "$ird/lib/modules"
cp "$root/bin/busybox" "$ird/bin/busybox"
install -m 755 "$guest/initramfs-init" "$ird/init"
# modules.dep lists each module's path, then every module it needs, the direct ones first.
declare -A module_path module_deps loaded
while IFS=: read -r path deps; do
  n=${path##*/}; n=${n%%.ko*}; n=${n//-/_}
  module_path[$n]=$path; module_deps[$n]=$deps
done < "$root/lib/modules/$kver/modules.dep"
order="$ird/lib/modules/order"  # what /init loads, one at a time, in this order
add_module() {  # add_module NAME: NAME after what it needs, each module once
  local m=${1//-/_} deps i d f
  [ -z "${loaded[$m]:-}" ] || return 0
  if [ -z "${module_path[$m]:-}" ]; then
    grep -q "/${1}.ko\$" "$root/lib/modules/$kver/modules.builtin" && return 0
    echo "build-debian: kernel $kver has no module $1" >&2; exit 1
  fi
  read -ra deps <<< "${module_deps[$m]}"
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do d=${deps[i]##*/}; add_module "${d%%.ko*}"; done
  loaded[$m]=1
  f="$root/lib/modules/$kver/${module_path[$m]}"
  case $f in
    *.ko) cp "$f" "$ird/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$ird/lib/modules/$m.ko" ;;
    *.ko.zst)
      command -v zstd >/dev/null || { echo "build-debian: kernel $kver's modules are zstd-compressed: apt-get install zstd" >&2; exit 3; }
      zstd -q -dc "$f" > "$ird/lib/modules/$m.ko" ;;
    *) echo "build-debian: cannot unpack the module $f" >&2; exit 1 ;;
  esac
  echo "$m" >> "$order"
}
: > "$order"
for m in virtio_pci virtio_blk ata_piix sr_mod isofs virtio_net virtio_rng; do add_module "$m"; done
(cd "$ird" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "$work/initrd")


# --- disk: DOS label, FAT boot partition with syslinux, ext4 root (as the tiny guest) --
# quiet: kernel messages on a serial line cost boot time under TCG; systemd's own status
# lines stay (the console shows the boot). The kernel and initramfs on the FAT partition
# are the ones of the build (the initramfs the one made above): a kernel upgraded inside the
# guest is not booted.
# initcall_blacklist=crypto_kdf108_init: that initcall only self-tests the SP800-108 KDF (no boot
# user; the KDF stays available), the longest initcall of this kernel under TCG (2.5 s of the
# kernel's ~7 s with initcall_debug, the machine loaded).
# cryptomgr.notests: no boot-time self-test of every crypto algorithm either (its emulated
# AES-NI/AVX2 variants included); the algorithms themselves are unchanged.
mkdir -p "$out"
syslinux_disk "$out/disk.qcow2" "$work" "$disk_mb" "$boot_mb" "$root/boot/vmlinuz-$kver" \
  "$work/initrd" "root=UUID=$uuid ro console=ttyS0,115200 quiet systemd.show_status=1 panic=-1 cryptomgr.notests initcall_blacklist=crypto_kdf108_init" \
  "$root" -L debian-root -U "$uuid"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$out/packages.txt"
echo "build-debian: $suite, kernel $kver, $(du -sh "$root" | cut -f1) tree, $(du -h "$out/disk.qcow2" | cut -f1) in $out"
