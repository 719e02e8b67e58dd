#!/usr/bin/env bash
# Build the offline "tiny" guest: a real Linux (Debian cloud kernel, busybox, dropbear)
# assembled from Debian packages with no internet, no loop mounts and no root.
#
#   build-tiny.sh OUT_DIR [AUTHORIZED_KEYS_FILE]
#
# The guest's architecture is $MINIVIRT_ARCH (x86_64 or aarch64; the builder sets it to the
# architecture being built), else the host's. Writes OUT_DIR/disk.qcow2 (1 GiB virtual) and
# OUT_DIR/config.json. x86_64: DOS label, FAT boot partition with syslinux (SeaBIOS boots it),
# ext4 root. aarch64: GPT, an EFI system partition with systemd-boot as BOOTAA64.EFI (UEFI
# firmware boots it), ext4 root; arm64 binaries cannot run here, so the host's own build of
# busybox lists the applets and the host's dropbearkey makes the host keys (both downloaded
# for the host's architecture). Packages come from `apt-get download` into a cache,
# ${MINIVIRT_TINY_CACHE:-${XDG_CACHE_HOME:-~/.cache}/minivirt/tiny}; the kernel is kept
# there too (minivirt's accelerator probe boots it). Facts behind each step are in
# shared/tiny-guest.md: module order, acpid, dropbear host keys, disk layout.
set -euo pipefail

out=${1:?usage: build-tiny.sh OUT_DIR [AUTHORIZED_KEYS_FILE]}
here=$(cd "$(dirname "$0")" && pwd)
keys=${2:-$here/../../minivirt_core/data/vagrant.pub}
cache=${MINIVIRT_TINY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/minivirt/tiny}
disk_mb=${TINY_DISK_MB:-1024}
host=$(uname -m)
case "$host" in amd64) host=x86_64 ;; arm64) host=aarch64 ;; esac
arch=${MINIVIRT_ARCH:-$host}
debarch_of() { case "$1" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) echo "build-tiny: unsupported architecture '$1' (x86_64 or aarch64)" >&2; exit 3 ;; esac; }
debarch=$(debarch_of "$arch")
hostdeb=$(debarch_of "$host")
case "$arch" in
  x86_64)
    boot_mb=32 tty=ttyS0 triplet=x86_64-linux-gnu loader=ld-linux-x86-64.so.2 loader_link=lib64 cmdline_extra=""
    disk_tools="sfdisk mkfs.vfat mcopy syslinux"
    install_hint="fdisk dosfstools mtools syslinux syslinux-common e2fsprogs cpio qemu-utils" ;;
  aarch64)
    # cryptomgr.notests: the kernel's self-tests of its crypto algorithms were ~70 % of the
    # guest instructions from the kernel's start to /init (0.82 -> 0.22 billion, counted with
    # QEMU's -icount; tight loops, so less of the host's time: bench/README.md). The x86_64
    # guest keeps its kernel line.
    boot_mb=64 tty=ttyAMA0 triplet=aarch64-linux-gnu loader=ld-linux-aarch64.so.1 loader_link=lib
    cmdline_extra=" cryptomgr.notests"
    disk_tools="sfdisk mkfs.vfat mcopy mmd"
    install_hint="fdisk dosfstools mtools e2fsprogs cpio qemu-utils (and: dpkg --add-architecture arm64 && apt-get update)" ;;
esac

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || {
      echo "build-tiny: '$tool' is missing. Install: apt-get install $install_hint" >&2
      exit 3
    }
  done
}
need apt-get apt-cache dpkg-deb $disk_tools mkfs.ext4 cpio gzip qemu-img dd
if [ "$arch" = x86_64 ]; then
  [ -f /usr/lib/syslinux/mbr/mbr.bin ] || { echo "build-tiny: syslinux-common's mbr.bin is missing: apt-get install syslinux-common" >&2; exit 3; }
elif ! dpkg --print-foreign-architectures | grep -qx "$debarch" && [ "$debarch" != "$(dpkg --print-architecture)" ]; then
  echo "build-tiny: apt knows no $debarch packages: dpkg --add-architecture $debarch && apt-get update" >&2; exit 3
fi
if [ "$(id -u)" != 0 ] && [ -z "${FAKEROOTKEY:-}" ]; then
  need fakeroot
  exec fakeroot -- "$0" "$@"
fi

kver=$(apt-cache depends "linux-image-cloud-$debarch:$debarch" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {sub("linux-image-", "", $2); sub(":.*", "", $2); print $2; exit}')
[ -n "$kver" ] || { echo "build-tiny: apt cannot resolve linux-image-cloud-$debarch; run 'apt-get update' first" >&2; exit 3; }
# Packages are named pkg:debarch throughout (the guest's, and the host's tools).
tools=(busybox-static dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g)
packages=()
for p in "linux-image-$kver" busybox-static dropbear-bin openssh-sftp-server perl-base libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g; do
  packages+=("$p:$debarch")
done
[ "$arch" = aarch64 ] && packages+=("systemd-boot-efi:$debarch")
host_packages=()
if [ "$arch" != "$host" ]; then
  for p in "${tools[@]}"; do host_packages+=("$p:$hostdeb"); done
fi

mkdir -p "$cache/debs"
# Builds may run side by side: the cache is updated under an exclusive lock, then read
# under a shared one (so nobody removes an unpacked tree another build is reading).
command -v flock >/dev/null || { echo "build-tiny: 'flock' (util-linux) is missing" >&2; exit 3; }
exec 9>"$cache/.lock"
flock -x 9
# One apt-cache call for every candidate version (each call costs about a second).
declare -A version
# apt-cache names a package of the native architecture without its :arch suffix.
native=$(dpkg --print-architecture)
while read -r p v; do
  [[ $p == *:* ]] || p=$p:$native
  version[$p]=${v//:/%3a}
done < <(apt-cache policy "${packages[@]}" "${host_packages[@]}" | awk '/^[^ ].*:$/ {sub(":$", "", $1); p=$1} /Candidate:/ {print p, $2}')
deb_of() { compgen -G "$cache/debs/${1%:*}_${version[$1]:-none}_${1#*:}.deb" "$cache/debs/${1%:*}_${version[$1]:-none}_all.deb" | head -1; }
missing=()
for p in "${packages[@]}" "${host_packages[@]}"; do [ -n "$(deb_of "$p")" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  (cd "$cache/debs" && apt-get download -q "${missing[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
fi

# Unpacked packages are cached too (the kernel's xz takes seconds), keyed by the .deb names;
# one tree per architecture ("unpack NAME PACKAGE..." prints the tree's path).
unpack() {
  local name=$1 debs=() deb p key tree old
  shift
  for p in "$@"; do
    deb=$(deb_of "$p")
    [ -n "$deb" ] || { echo "build-tiny: could not download $p (apt-get download $p)" >&2; exit 3; }
    debs+=("$deb")
  done
  key=$(printf '%s\n' "${debs[@]##*/}" | sha256sum | cut -c1-16)
  tree="$cache/tree-$name-$key"
  if [ ! -d "$tree" ]; then
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
    for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$tree.tmp"; done
    mv "$tree.tmp" "$tree"
    # Older unpacked trees of this kind are of no further use.
    for old in "$cache"/tree-"$name"-*; do
      [ "$old" = "$tree" ] || rm -rf "$old"
    done
  fi
  echo "$tree"
}
x=$(unpack "$debarch" "${packages[@]}")
hx=$x  # the host's own busybox and dropbearkey, run at build time
[ ${#host_packages[@]} -eq 0 ] || hx=$(unpack "tools-$hostdeb" "${host_packages[@]}")

work=$(mktemp -d "${TMPDIR:-/tmp}/tiny-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The accelerator probe boots the host's kind of kernel: keep only that one.
if [ "$arch" = "$host" ]; then
  cp "$x/boot/vmlinuz-$kver" "$cache/vmlinuz-$kver.tmp.$$" && mv "$cache/vmlinuz-$kver.tmp.$$" "$cache/vmlinuz-$kver"
fi
flock -s 9

# --- initramfs: busybox + the virtio modules, mounts the root and switch_roots ----
ird="$work/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$x/bin/busybox" "$ird/bin/busybox"
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net button evdev virtio-rng"
present=""  # the init loads only these (each insmod is a process: dear under emulation)
for m in $modules; do
  f=$(find "$x/lib/modules/$kver" -name "$m.ko*" | head -1)
  if [ -n "$f" ]; then cp "$f" "$ird/lib/modules/"; present="${present:+$present }$m"; fi  # else built in (button on arm64)
done
cat > "$ird/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
for m in $present; do /bin/busybox insmod /lib/modules/\$m.ko 2>/dev/null; done
root=/dev/vda2
for i in \$(/bin/busybox seq 1 200); do [ -b \$root ] && break; /bin/busybox usleep 20000; done
/bin/busybox mount -t ext4 -o rw \$root /newroot || { echo "tiny: cannot mount \$root"; exec /bin/busybox sh; }
/bin/busybox umount /proc
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
INIT
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "$work/initrd.gz")

# --- root filesystem --------------------------------------------------------------
r="$work/root"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/lib,"lib/$triplet",lib64,etc/dropbear,etc/acpi/PWRF,etc/rc.d,root/.ssh,proc,sys,dev,tmp,run,var/log,home,mnt}
cp "$x/bin/busybox" "$r/bin/busybox"
for applet in $("$hx/bin/busybox" --list-full); do
  [ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
done
cp "$x/usr/sbin/dropbear" "$r/usr/sbin/"
cp "$x/usr/bin/dropbearkey" "$r/usr/bin/"
cp "$x/usr/lib/openssh/sftp-server" "$r/usr/lib/sftp-server"
# perl's binary alone (3.8 MB, no modules): a VM resumed from a warm state reseeds its RNG
# with perl's ioctl (RNDRESEEDCRNG), which no busybox applet can make; without it, clones of
# one state read the same random numbers until the kernel's next reseed.
cp "$x/usr/bin/perl" "$r/usr/bin/perl"
for lib in libc.so.6 libcrypt.so.1 libtomcrypt.so.1 libtommath.so.1 libgmp.so.10 libz.so.1 libm.so.6 libresolv.so.2; do
  src=$(find "$x/lib/$triplet" "$x/usr/lib/$triplet" -name "$lib" 2>/dev/null | head -1)
  [ -n "$src" ] && cp -L "$src" "$r/lib/$triplet/$lib"
done
cp -L "$x/lib/$triplet/$loader" "$r/lib/$triplet/"
[ -e "$r/$loader_link/$loader" ] || ln -s "/lib/$triplet/$loader" "$r/$loader_link/$loader"

echo tiny > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 tiny\n' > "$r/etc/hosts"
echo 'root::0:0:root:/root:/bin/sh' > "$r/etc/passwd"
echo 'root:x:0:' > "$r/etc/group"
echo '/bin/sh' > "$r/etc/shells"
cat > "$r/etc/profile" <<'PROFILE'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\h:\w\$ '
PROFILE
cat > "$r/etc/inittab" <<INITTAB
::sysinit:/etc/rc
$tty::respawn:/sbin/getty -L 115200 $tty vt100
::respawn:/usr/sbin/dropbear -F -R -p 22
::respawn:/sbin/acpid -f
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/mount -o remount,ro /
INITTAB
cat > "$r/etc/rc" <<'RC'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -o remount,rw /
hostname -F /etc/hostname
# dropbear waits for the kernel's entropy; reading one byte early starts that sooner.
(head -c1 /dev/random >/dev/null &)
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
for f in /etc/rc.d/*; do [ -x "$f" ] && "$f"; done
exit 0
RC
chmod 755 "$r/etc/rc"
printf '#!/bin/sh\npoweroff\n' > "$r/etc/acpi/PWRF/00000080"
chmod 755 "$r/etc/acpi/PWRF/00000080"
cp "$keys" "$r/root/.ssh/authorized_keys"
chmod 700 "$r/root/.ssh" "$r/root"
chmod 600 "$r/root/.ssh/authorized_keys"
chmod 1777 "$r/tmp"
# Host keys made now (generating RSA under TCG takes ~6 s), with the host's build of
# dropbearkey through its own loader (the guest's when both architectures are the same).
htriplet=$(basename "$(dirname "$(compgen -G "$hx/lib/*-linux-gnu/libc.so.6" | head -1)")")
hloader=$(compgen -G "$hx/lib/$htriplet/ld-linux*.so.*" | head -1)
for t in rsa ecdsa ed25519; do
  "$hloader" --library-path "$hx/lib/$htriplet:$hx/usr/lib/$htriplet" \
    "$hx/usr/bin/dropbearkey" -t $t -f "$r/etc/dropbear/dropbear_${t}_host_key" >/dev/null 2>&1
done
[ -s "$r/etc/dropbear/dropbear_rsa_host_key" ] || { echo "build-tiny: dropbearkey made no host key" >&2; exit 3; }
chown -R 0:0 "$r"

# --- disk: boot partition (kernel, initramfs, boot loader) then ext4 root ----------
raw="$work/disk.raw"
truncate -s "${disk_mb}M" "$raw"
boot="$work/boot.img"
cmdline="root=/dev/vda2 rw console=$tty,115200 quiet panic=-1${cmdline_extra}"
if [ "$arch" = x86_64 ]; then
  # DOS label, FAT boot partition made bootable with syslinux (SeaBIOS).
  printf 'label: dos\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
    $((boot_mb * 2048)) $((2048 + boot_mb * 2048)) | sfdisk -q "$raw"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
  mkfs.vfat -h 2048 -C "$boot" $((boot_mb * 1024)) >/dev/null
  cat > "$work/syslinux.cfg" <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND $cmdline
CFG
  mcopy -i "$boot" "$x/boot/vmlinuz-$kver" ::/vmlinuz
  mcopy -i "$boot" "$work/initrd.gz" ::/initrd.gz
  mcopy -i "$boot" "$work/syslinux.cfg" ::/syslinux.cfg
  syslinux --install "$boot"
else
  # GPT, an EFI system partition with systemd-boot as the removable-media loader (UEFI).
  printf 'label: gpt\nstart=2048, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=%d, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' \
    $((boot_mb * 2048)) $((2048 + boot_mb * 2048)) | sfdisk -q "$raw"
  mkfs.vfat -F 32 -h 2048 -C "$boot" $((boot_mb * 1024)) >/dev/null
  printf 'timeout 0\ndefault tiny.conf\n' > "$work/loader.conf"
  printf 'title tiny\nlinux /vmlinuz\ninitrd /initrd.gz\noptions %s\n' "$cmdline" > "$work/tiny.conf"
  mmd -i "$boot" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
  mcopy -i "$boot" "$x/usr/lib/systemd/boot/efi/systemd-bootaa64.efi" ::/EFI/BOOT/BOOTAA64.EFI
  mcopy -i "$boot" "$x/boot/vmlinuz-$kver" ::/vmlinuz
  mcopy -i "$boot" "$work/initrd.gz" ::/initrd.gz
  mcopy -i "$boot" "$work/loader.conf" ::/loader/loader.conf
  mcopy -i "$boot" "$work/tiny.conf" ::/loader/entries/tiny.conf
fi
dd if="$boot" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
# The root filesystem is made in place, at its partition's offset (no copy of 1 GiB); GPT
# keeps its backup header in the last 33 sectors, so the root stops 1 MiB short of the end.
root_blocks=$(( (disk_mb - 2 - boot_mb) * 256 ))
mkfs.ext4 -q -F -L tiny-root -d "$r" -b 4096 \
  -E offset=$(( (1 + boot_mb) * 1048576 )),lazy_itable_init=0,lazy_journal_init=0 "$raw" "$root_blocks"

mkdir -p "$out"
qemu-img convert -q -O qcow2 "$raw" "$out/disk.qcow2.tmp"
mv "$out/disk.qcow2.tmp" "$out/disk.qcow2"
printf '{\n  "disk": true,\n  "arch": "%s"\n}\n' "$arch" > "$out/config.json"
echo "build-tiny: $arch, kernel $kver, disk $out/disk.qcow2 ($(du -h "$out/disk.qcow2" | cut -f1) on disk)"
