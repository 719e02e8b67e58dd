# Sourced by recipes/debian/build-debian.sh: a bootable disk made without loop mounts, as
# the tiny guest's x86_64 disk is (recipes/tiny/build-tiny.sh, which has its own copy beside
# its aarch64 EFI variant; facts in shared/tiny-guest.md).
#
#   syslinux_disk OUT_QCOW2 WORK DISK_MB BOOT_MB KERNEL INITRD APPEND ROOT_DIR MKFS_ARGS...
#
# A DOS label: partition 1 a FAT boot partition of BOOT_MB holding KERNEL, INITRD and a
# syslinux.cfg booting them with the kernel command line APPEND (syslinux's MBR in front);
# partition 2, the rest, an ext4 filled from ROOT_DIR by `mkfs.ext4 -d` in place at its
# offset (MKFS_ARGS add e.g. a label or a UUID). Written to OUT_QCOW2 (staged, renamed).
syslinux_disk() {
  local out=$1 work=$2 disk_mb=$3 boot_mb=$4 kernel=$5 initrd=$6 append=$7 rootdir=$8
  shift 8
  local raw="$work/disk.raw" boot="$work/boot.img"
  truncate -s "${disk_mb}M" "$raw"
  printf 'label: dos\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
    $((boot_mb * 2048)) $((2048 + boot_mb * 2048)) | sfdisk -q "$raw"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
  mkfs.vfat -h 2048 -C "$boot" $((boot_mb * 1024)) >/dev/null
  printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd\n  APPEND %s\n' \
    "$append" > "$work/syslinux.cfg"
  mcopy -i "$boot" "$kernel" ::/vmlinuz
  mcopy -i "$boot" "$initrd" ::/initrd
  mcopy -i "$boot" "$work/syslinux.cfg" ::/syslinux.cfg
  syslinux --install "$boot"
  dd if="$boot" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
  # The root filesystem is made in place, at its partition's offset (no copy of the disk).
  mkfs.ext4 -q -F -d "$rootdir" -b 4096 "$@" \
    -E offset=$(( (1 + boot_mb) * 1048576 )),lazy_itable_init=0,lazy_journal_init=0 \
    "$raw" $(( (disk_mb - 1 - boot_mb) * 256 ))
  qemu-img convert -q -O qcow2 "$raw" "$out.tmp"
  mv "$out.tmp" "$out"
}
