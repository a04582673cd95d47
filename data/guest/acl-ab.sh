#!/bin/sh
# acl-ab: the node's side of acl's A/B updates (installed as /usr/lib/acl/acl-ab).
#
#   acl-ab health   run the image's health checks (/usr/lib/acl/health.d/*); a failure
#                   on a boot on trial exits 1 (`boot` then reboots; on systemd,
#                   FailureAction=reboot), so the entry uses up a try
#   acl-ab bless    mark the entry systemd-boot counted for this boot as good (what
#                   systemd-bless-boot does on systemd images), then sync
#   acl-ab sync     set the GPT attributes of USR-A/USR-B (priority, tries,
#                   successful) to what the ESP's entries say
#   acl-ab boot     health, then bless (busybox images run this from inittab)
#
# Runs on busybox and on systemd images: POSIX sh, busybox or coreutils, and
# sfdisk from acl's private tool folder (/usr/lib/acl/tools), so an image
# needs nothing of its own. Every step is a no-op on a machine without UEFI.
set -u

TOOLS=/usr/lib/acl/tools
HEALTH_DIR=/usr/lib/acl/health.d
LOADER_GUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
EFIVARS=/sys/firmware/efi/efivars

say() { echo "acl-ab: $*"; }
die() { say "error: $*" >&2; exit 1; }

# sfdisk with acl's own loader and libraries: works whatever libc the image has
sfdisk_() { "$TOOLS/lib/ld-linux-x86-64.so.2" --library-path "$TOOLS/lib" "$TOOLS/bin/sfdisk" "$@"; }

# the running slot, from the command line the UKI carries
running_slot() {
  read -r cmdline </proc/cmdline
  for w in $cmdline; do
    case "$w" in acl.slot=A|acl.slot=B) echo "${w#acl.slot=}"; return 0 ;; esac
  done
  return 1
}

# /sys/class/block entry of the partition whose GPT name is $1
part_by_name() {
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$u" 2>/dev/null; then basename "$(dirname "$u")"; return 0; fi
  done
  return 1
}

# the whole disk a partition is on, and its number
disk_of() { basename "$(dirname "$(readlink -f "/sys/class/block/$1")")"; }
partno_of() { cat "/sys/class/block/$1/partition"; }

ESP_MNT=""
# the ESP mounted read-write: where the system has it (/efi, /boot, /boot/efi), else under /run
mount_esp() {
  [ -n "$ESP_MNT" ] && return 0
  for d in /efi /boot /boot/efi; do
    if [ -d "$d/EFI/Linux" ] && grep -qs " $d vfat rw" /proc/mounts; then ESP_MNT=$d; return 0; fi
  done
  part=$(part_by_name EFI-SYSTEM) || die "no partition named EFI-SYSTEM"
  modprobe -a vfat nls_cp437 nls_ascii nls_utf8 2>/dev/null || true
  mkdir -p /run/acl/esp
  mount -t vfat -o rw "/dev/$part" /run/acl/esp || die "cannot mount /dev/$part (the ESP)"
  ESP_MNT=/run/acl/esp
}

efivars_ready() {
  [ -d /sys/firmware/efi ] || return 1
  [ -d "$EFIVARS" ] || return 1
  grep -qs " $EFIVARS efivarfs" /proc/mounts || mount -t efivarfs efivarfs "$EFIVARS" 2>/dev/null || return 1
}

# LoaderBootCountPath as a path on the ESP (EFI/Linux/acl-B+2-1.efi), empty when this boot was not counted
boot_count_path() {
  f="$EFIVARS/LoaderBootCountPath-$LOADER_GUID"
  [ -f "$f" ] || return 0
  # 4 bytes of attributes, then UTF-16LE: keep the ASCII bytes, turn '\' into '/'
  tail -c +5 "$f" | tr -d '\000' | sed -e 's,[\\],/,g' -e 's,^/,,'
}

# entry file of slot $1 on the ESP (first match), empty if none
entry_of() {
  for f in "$ESP_MNT"/EFI/Linux/acl-"$1".efi "$ESP_MNT"/EFI/Linux/acl-"$1"+*.efi; do
    [ -f "$f" ] && { basename "$f"; return 0; }
  done
  return 0
}

# GPT attribute bits for priority $1, tries $2, successful $3 (sfdisk's GUID:bit list)
attr_bits() {
  bits=""
  i=0
  while [ $i -lt 4 ]; do
    [ $(( ($1 >> i) & 1 )) -eq 1 ] && bits="$bits,$((48 + i))"
    [ $(( ($2 >> i) & 1 )) -eq 1 ] && bits="$bits,$((52 + i))"
    i=$((i + 1))
  done
  [ "$3" = 1 ] && bits="$bits,56"
  if [ -n "$bits" ]; then echo "GUID:${bits#,}"; else echo ""; fi
}

set_slot_attrs() { # slot priority tries successful
  part=$(part_by_name "USR-$1") || die "no partition named USR-$1"
  disk=$(disk_of "$part")
  n=$(partno_of "$part")
  sfdisk_ --quiet --no-reread --no-tell-kernel --part-attrs "/dev/$disk" "$n" "$(attr_bits "$2" "$3" "$4")" >/dev/null 2>&1 ||
    die "sfdisk could not set the attributes of USR-$1 (/dev/$disk partition $n)"
}

# tries left in a counted entry name (acl-B+2-1.efi -> 2)
tries_left() { c=${1%.efi}; c=${c##*+}; echo "${c%%-*}"; }

# state of an entry file name: good, trying, bad or fallback
entry_state() {
  stem=${1%.efi}
  case "$stem" in
    *+*) ;;
    *) echo good; return ;;
  esac
  counter=${stem##*+}
  left=${counter%%-*}
  done_=0
  case "$counter" in *-*) done_=${counter#*-} ;; esac
  if [ "$left" -gt 0 ]; then echo trying
  elif [ "$done_" -eq 0 ]; then echo fallback
  else echo bad
  fi
}

cmd_sync() {
  efivars_ready || { say "no UEFI: nothing to sync"; return 0; }
  mount_esp
  me=$(running_slot) || { say "the command line names no acl.slot: nothing to sync"; return 0; }
  if [ "$me" = A ]; then other=B; else other=A; fi
  mine=$(entry_of "$me")
  theirs=$(entry_of "$other")
  s=absent
  [ -n "$theirs" ] && s=$(entry_state "$theirs")
  # the running slot is what systemd-boot chose: first in its order. Bootable
  # slots get priorities counting down to 1, bad ones 0 (formats/boot-entries.ts)
  top=1
  case "$s" in good|fallback|trying) top=2 ;; esac
  case "$(entry_state "${mine:-none+0-1.efi}")" in
    good|fallback) set_slot_attrs "$me" "$top" 0 1 ;;
    trying) set_slot_attrs "$me" "$top" "$(tries_left "$mine")" 0 ;;
    *) set_slot_attrs "$me" "$top" 0 0 ;;
  esac
  case "$s" in
    good|fallback) set_slot_attrs "$other" 1 0 1 ;;
    trying) set_slot_attrs "$other" 1 "$(tries_left "$theirs")" 0 ;;
    *) set_slot_attrs "$other" 0 0 0 ;;
  esac
  say "gpt in step: USR-$me ${mine:-no entry} (running), USR-$other ${theirs:-no entry} ($s)"
}

cmd_bless() {
  efivars_ready || { say "no UEFI: nothing to bless"; return 0; }
  mount_esp
  p=$(boot_count_path)
  if [ -n "$p" ] && [ -f "$ESP_MNT/$p" ]; then
    stem=${p%.efi}
    good="${stem%+*}.efi"
    mv "$ESP_MNT/$p" "$ESP_MNT/$good" || die "cannot rename $p to $good"
    sync
    say "blessed $(basename "$good") (was $(basename "$p"))"
  else
    say "this boot was not counted: nothing to bless"
  fi
  cmd_sync
}

cmd_health() {
  failed=""
  grep -qs ' /usr erofs ro\| /usr squashfs ro' /proc/mounts || failed="usr-readonly"
  if [ -d "$HEALTH_DIR" ]; then
    for h in "$HEALTH_DIR"/*; do
      [ -x "$h" ] || continue
      "$h" || failed="$failed $(basename "$h")"
    done
  fi
  if [ -z "$failed" ]; then say "health ok"; return 0; fi
  # only a boot on trial is rebooted: an entry already good has no older one to fall back to
  if efivars_ready && [ -n "$(boot_count_path)" ]; then
    say "health check failed:$failed: rebooting without blessing this boot"
    return 1
  fi
  say "health check failed:$failed: this entry is already good, so it keeps booting"
  return 0
}

cmd_boot() {
  if ! cmd_health; then
    # the try this boot used is recorded in the GPT too, then the next try (or the fallback) boots
    cmd_sync || true
    sync
    reboot -f
    exit 1
  fi
  cmd_bless
}

case "${1:-}" in
  health) cmd_health ;;
  bless) cmd_bless ;;
  sync) cmd_sync ;;
  boot) cmd_boot ;;
  *) die "usage: acl-ab health|bless|sync|boot" ;;
esac
