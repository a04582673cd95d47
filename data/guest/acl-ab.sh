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
#   acl-ab vercmp A B   -1, 0 or 1: systemd's version order, as the updater compares
#   acl-ab pe-signed FILE OFFSET   exit 0 when the PE image at OFFSET of FILE carries an
#                   Authenticode certificate table (what the updater checks under Secure Boot)
#   acl-ab apply PAYLOAD [--tries N] [--allow-downgrade]
#                   (also installed as /usr/lib/acl/acl-update) verify a signed update
#                   payload with the key baked into the image, write the idle slot,
#                   read it back, and install its UKI with N tries as the last step
#
# Runs on busybox and on systemd images: POSIX sh, busybox or coreutils, and
# sfdisk and openssl from acl's private tool folder (/usr/lib/acl/tools), so an image
# needs nothing of its own. Every step is a no-op on a machine without UEFI.
set -u

TOOLS=/usr/lib/acl/tools
HEALTH_DIR=/usr/lib/acl/health.d
LOADER_GUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
EFIVARS=/sys/firmware/efi/efivars

say() { echo "acl-ab: $*"; }
die() { say "error: $*" >&2; exit 1; }

UPDATE_KEY=/usr/lib/acl/update.pub
# written by acl from the spec's [update] section: TRIES=N
UPDATE_CONF=/usr/lib/acl/update.conf

# sfdisk and openssl with acl's own loader and libraries: works whatever libc the image has
tool_() { t="$1"; shift; "$TOOLS/lib/ld-linux-x86-64.so.2" --library-path "$TOOLS/lib" "$TOOLS/bin/$t" "$@"; }
sfdisk_() { tool_ sfdisk "$@"; }
openssl_() { tool_ openssl "$@"; }

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
  for d in /efi /boot /boot/efi /run/acl/esp; do
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

# ---------------------------------------------------------------- apply

# bytes [off, off+len) of a file or device, in 4 KiB blocks when both are aligned
range_() { # file off len
  if [ $(( $2 % 4096 )) -eq 0 ] && [ $(( $3 % 4096 )) -eq 0 ]; then
    dd if="$1" bs=4096 skip=$(( $2 / 4096 )) count=$(( $3 / 4096 )) 2>/dev/null
  else
    tail -c +$(( $2 + 1 )) "$1" | head -c "$3"
  fi
}
sha_() { openssl_ dgst -sha256 -r | cut -d' ' -f1; }
# unsigned big-endian 32-bit integer at byte $2 of file $1
u32_() { range_ "$1" "$2" 4 | od -An -tu1 | awk '{ print ((($1 * 256 + $2) * 256 + $3) * 256 + $4) }'; }
# unsigned little-endian 32-bit integer at byte $2 of file $1
u32le_() { range_ "$1" "$2" 4 | od -An -tu1 | awk '{ print ((($4 * 256 + $3) * 256 + $2) * 256 + $1) }'; }
u16le_() { range_ "$1" "$2" 2 | od -An -tu1 | awk '{ print $2 * 256 + $1 }'; }
# is the PE32+ image at byte $2 of file $1 signed (data directory 4, the certificate table, non-empty)?
pe_signed_() {
  [ "$(range_ "$1" "$2" 2)" = MZ ] || return 1
  pe=$(( $2 + $(u32le_ "$1" $(( $2 + 60 ))) ))
  [ "$(range_ "$1" "$pe" 4 | od -An -tx1 | tr -d ' ')" = 50450000 ] || return 1
  [ "$(u16le_ "$1" $(( pe + 24 )))" = 523 ] || return 1 # 0x20b: PE32+
  [ "$(u32le_ "$1" $(( pe + 24 + 108 )))" -gt 4 ] || return 1 # NumberOfRvaAndSizes reaches entry 4
  [ "$(u32le_ "$1" $(( pe + 24 + 148 )))" -gt 0 ]
}
# the firmware enforces Secure Boot (the SecureBoot variable: 4 attribute bytes, then 1)
secure_boot_on() {
  f="$EFIVARS/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
  [ -r "$f" ] && [ "$(range_ "$f" 4 1 | od -An -tu1 | tr -d ' ')" = 1 ]
}
json_str() { grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | sed 's/.*:"\(.*\)"/\1/'; }
json_num() { grep -o "\"$1\":[0-9]*" | head -n 1 | sed 's/.*://'; }
# section NAME of the metadata in $meta: sets s_off, s_sha, s_size
sect() {
  s_off="" s_sha="" s_size=""
  read -r s_off s_sha s_size <<SECTION
$(section_ "$meta" "$1")
SECTION
  [ -n "$s_size" ] || die "refused: the payload has no section $1"
}
section_() { # json name -> "offset sha256 size"
  printf '%s' "$1" | grep -o "{\"name\":\"$2\",\"offset\":[0-9]*,\"sha256\":\"[0-9a-f]*\",\"size\":[0-9]*}" |
    sed 's/.*"offset":\([0-9]*\),"sha256":"\([0-9a-f]*\)","size":\([0-9]*\)}/\1 \2 \3/'
}

# systemd's version order (strverscmp_improved) in awk: prints -1, 0 or 1
vercmp() {
  awk -v a="$1" -v b="$2" '
    function isv(c) { return c ~ /[A-Za-z0-9~^.-]/ }
    function cls(c) { return c ~ /[0-9]/ ? "d" : (c ~ /[A-Za-z]/ ? "a" : "o") }
    BEGIN {
      i = 1; j = 1; la = length(a); lb = length(b)
      while (1) {
        while (i <= la && !isv(substr(a, i, 1))) i++
        while (j <= lb && !isv(substr(b, j, 1))) j++
        ca = substr(a, i, 1); cb = substr(b, j, 1)
        if (ca == "~" || cb == "~") { if (ca != "~") { print 1; exit } if (cb != "~") { print -1; exit } i++; j++ }
        if (i > la || j > lb) { print (i > la && j > lb) ? 0 : (i > la ? -1 : 1); exit }
        n = split("- ^ .", seps, " ")
        for (k = 1; k <= n; k++) {
          ca = substr(a, i, 1); cb = substr(b, j, 1); s = seps[k]
          if (ca == s || cb == s) { if (ca != s) { print 1; exit } if (cb != s) { print -1; exit } i++; j++ }
        }
        ca = substr(a, i, 1); cb = substr(b, j, 1)
        if (cls(ca) == "d" || cls(cb) == "d") {
          ii = i; while (ii <= la && cls(substr(a, ii, 1)) == "d") ii++
          jj = j; while (jj <= lb && cls(substr(b, jj, 1)) == "d") jj++
          if ((ii > i) != (jj > j)) { print (ii > i) ? 1 : -1; exit }
          while (i < ii && substr(a, i, 1) == "0") i++
          while (j < jj && substr(b, j, 1) == "0") j++
          if (ii - i != jj - j) { print (ii - i > jj - j) ? 1 : -1; exit }
          x = substr(a, i, ii - i); y = substr(b, j, jj - j)
          if (x != y) { print (x > y) ? 1 : -1; exit }
        } else {
          ii = i; while (ii <= la && cls(substr(a, ii, 1)) == "a") ii++
          jj = j; while (jj <= lb && cls(substr(b, jj, 1)) == "a") jj++
          m = (ii - i < jj - j) ? ii - i : jj - j
          x = substr(a, i, m); y = substr(b, j, m)
          if (x != y) { print (x > y) ? 1 : -1; exit }
          if (ii - i != jj - j) { print (ii - i > jj - j) ? 1 : -1; exit }
        }
        i = ii; j = jj
      }
    }'
}

level_rank() { case "$1" in x86-64) echo 1 ;; x86-64-v2) echo 2 ;; x86-64-v3) echo 3 ;; x86-64-v4) echo 4 ;; *) echo 99 ;; esac; }
os_field() { sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" /usr/lib/os-release | head -n 1; }

cmd_apply() {
  tries=3
  if [ -r "$UPDATE_CONF" ]; then
    conf_tries=$(sed -n 's/^TRIES=\([0-9]*\)$/\1/p' "$UPDATE_CONF")
    [ -n "$conf_tries" ] && tries=$conf_tries
  fi
  file="" allow_down=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --tries) tries="$2"; shift ;;
      --allow-downgrade) allow_down=1 ;;
      -*) die "unknown option $1" ;;
      *) file="$1" ;;
    esac
    shift
  done
  [ -n "$file" ] || die "usage: acl-update apply PAYLOAD [--tries N] [--allow-downgrade]"
  [ -r "$file" ] || die "cannot read $file"
  case "$tries" in [1-9]|1[0-5]) ;; *) die "--tries $tries is out of range (1-15)" ;; esac
  [ -f "$UPDATE_KEY" ] || die "this image was built without an update key ([update] key or a signing key): it cannot check payloads"
  efivars_ready || die "no UEFI variables: A/B updates need systemd-boot"
  mount_esp
  me=$(running_slot) || die "the command line names no acl.slot: not booted from an acl UKI"
  if [ "$me" = A ]; then target=B; else target=A; fi
  mine=$(entry_of "$me")
  [ "$(entry_state "${mine:-none+0-1.efi}")" = good ] || [ "$(entry_state "${mine:-none+0-1.efi}")" = fallback ] ||
    die "refused: this boot (${mine:-no entry}) is not blessed yet; writing slot $target now could leave no good slot to fall back to"
  [ -z "$(boot_count_path)" ] || [ ! -f "$ESP_MNT/$(boot_count_path)" ] ||
    die "refused: this boot is still on trial ($(boot_count_path)); wait until it is blessed"

  say "checking $file for slot $target (running: slot $me, $mine)"
  work=/run/acl/update
  rm -rf "$work"; mkdir -p "$work"
  # the header, checked before anything else is read from the payload
  [ "$(range_ "$file" 0 6)" = ACLUPD ] || die "refused: $file is not an acl update payload"
  [ "$(range_ "$file" 6 2 | od -An -tu1 | tr -s ' ')" = " 0 2" ] || die "refused: $file is not payload format 2"
  jlen=$(u32_ "$file" 8)
  if [ "$jlen" -le 0 ] || [ "$jlen" -gt 1048576 ]; then die "refused: the payload header claims $jlen bytes"; fi
  range_ "$file" 12 "$jlen" >"$work/meta.json"
  meta=$(cat "$work/meta.json")
  data_off=$(( (12 + jlen + 4095) / 4096 * 4096 ))
  range_ "$file" 0 "$data_off" >"$work/header"
  sig_off=$(printf '%s' "$meta" | json_num signatureOffset)
  [ -n "$sig_off" ] || die "refused: the payload header has no signatureOffset"
  [ "$(range_ "$file" "$sig_off" 6)" = ACLSIG ] || die "refused: the payload is not signed (or is truncated)"
  slen=$(u32_ "$file" $(( sig_off + 8 )))
  if [ "$slen" -le 0 ] || [ "$slen" -gt 65536 ]; then die "refused: the signature block claims $slen bytes"; fi
  end=$(( sig_off + 12 + slen ))
  if [ -f "$file" ]; then
    [ "$(wc -c <"$file")" -eq "$end" ] || die "refused: $file is $(wc -c <"$file") bytes, its signature block ends at $end (truncated or extended)"
  fi
  sig=$(range_ "$file" $(( sig_off + 12 )) "$slen")
  [ "$(range_ "$file" $(( end - 1 )) 1)" = "}" ] || die "refused: the payload is truncated"
  alg=$(printf '%s' "$sig" | json_str algorithm)
  key_id=$(printf '%s' "$sig" | json_str keyId)
  printf '%s' "$sig" | json_str signature | openssl_ base64 -d -A >"$work/sig"
  trusted=$(openssl_ pkey -pubin -in "$UPDATE_KEY" -outform DER | sha_)
  [ "$key_id" = "$trusted" ] || die "refused: the payload is signed by key $key_id, not by this image's update key $trusted"
  case "$alg" in
    ed25519) openssl_ pkeyutl -verify -pubin -inkey "$UPDATE_KEY" -rawin -in "$work/header" -sigfile "$work/sig" >/dev/null 2>&1 ;;
    rsa) openssl_ dgst -sha256 -verify "$UPDATE_KEY" -signature "$work/sig" "$work/header" >/dev/null 2>&1 ;;
    *) false ;;
  esac || die "refused: the payload's signature does not verify with $UPDATE_KEY"
  say "signature ok (key $key_id)"

  name=$(printf '%s' "$meta" | json_str name)
  version=$(printf '%s' "$meta" | json_str version)
  level=$(printf '%s' "$meta" | json_str microarch)
  min_version=$(printf '%s' "$meta" | json_str minVersion)
  my_name=$(os_field IMAGE_ID)
  my_version=$(os_field IMAGE_VERSION)
  my_level=$(os_field ACL_MICROARCH)
  [ "$name" = "$my_name" ] || die "refused: the payload is for image '$name', this node runs '$my_name'"
  c=$(vercmp "$version" "$my_version")
  if [ "$c" -le 0 ] && [ "$allow_down" != 1 ]; then
    if [ "$c" -eq 0 ]; then die "refused: version $version is already installed (pass --allow-downgrade to install it anyway)"; fi
    die "refused: $version is older than the installed $my_version (pass --allow-downgrade to install it anyway)"
  fi
  if [ -n "$min_version" ] && [ "$(vercmp "$my_version" "$min_version")" -lt 0 ]; then
    die "refused: the payload updates only from $min_version or later; this node runs $my_version"
  fi
  [ "$(level_rank "$level")" -le "$(level_rank "$my_level")" ] || die "refused: the payload needs $level, the installed image needs only $my_level"

  # every section's digest, and zeros in the padding between them
  prev_end=$data_off
  for sec in "uki-$target" usr; do
    sect "$sec"
    [ "$(range_ "$file" "$s_off" "$s_size" | sha_)" = "$s_sha" ] || die "refused: section $sec does not match its signed sha256 (the file was changed)"
  done
  for sec in uki-A uki-B usr; do
    sect "$sec"
    gap=$(( s_off - prev_end ))
    if [ "$gap" -gt 0 ] && [ "$(range_ "$file" "$prev_end" "$gap" | tr -d '\000' | wc -c)" -ne 0 ]; then die "refused: non-zero padding before section $sec"; fi
    prev_end=$(( s_off + s_size ))
  done
  sect usr
  usr_off=$s_off usr_sha=$s_sha usr_size=$s_size
  part=$(part_by_name "USR-$target") || die "no partition named USR-$target"
  slot_bytes=$(( $(cat "/sys/class/block/$part/size") * 512 ))
  [ "$usr_size" -le "$slot_bytes" ] || die "refused: the new /usr is $usr_size bytes, USR-$target holds $slot_bytes"
  sect "uki-$target"
  uki_off=$s_off uki_sha=$s_sha uki_size=$s_size
  # under Secure Boot the firmware starts only signed UKIs: an unsigned one would leave the node stopped in its firmware
  if secure_boot_on && ! pe_signed_ "$file" "$uki_off"; then
    die "refused: this node boots with Secure Boot on and the payload's UKI for slot $target is not signed (build the update with --secureboot-key and --secureboot-cert)"
  fi
  say "payload ok: $name $version ($level) for slot $target; writing"

  # 1. the target slot holds nothing bootable while it is written
  set_slot_attrs "$target" 0 0 0
  rm -f "$ESP_MNT"/EFI/Linux/acl-"$target".efi "$ESP_MNT"/EFI/Linux/acl-"$target"+*.efi "$ESP_MNT/EFI/Linux/.acl-$target.new"
  sync
  say "writing USR-$target (/dev/$part, $usr_size bytes)"
  range_ "$file" "$usr_off" "$usr_size" | dd of="/dev/$part" bs=4096 conv=fsync 2>/dev/null || die "writing /dev/$part failed"
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  [ "$(range_ "/dev/$part" 0 "$usr_size" | sha_)" = "$usr_sha" ] || die "USR-$target reads back differently from what was written: the disk may be failing; slot $me still boots"
  say "USR-$target written and read back"
  # 2. a downgrade would sort after the running entry: rank that one last, it stays the fallback
  if [ "$(vercmp "$version" "$my_version")" -le 0 ] && [ "$mine" != "acl-$me+0-0.efi" ]; then
    mv "$ESP_MNT/EFI/Linux/$mine" "$ESP_MNT/EFI/Linux/acl-$me+0-0.efi" || die "cannot rename $mine"
    mine="acl-$me+0-0.efi"
  fi
  # 3. the new entry: copied under a name systemd-boot ignores, checked, then renamed
  say "copying the UKI for slot $target to the ESP"
  range_ "$file" "$uki_off" "$uki_size" >"$ESP_MNT/EFI/Linux/.acl-$target.new"
  sync
  [ "$(sha_ <"$ESP_MNT/EFI/Linux/.acl-$target.new")" = "$uki_sha" ] || die "the UKI copied to the ESP reads back differently"
  say "installing EFI/Linux/acl-$target+$tries-0.efi"
  mv "$ESP_MNT/EFI/Linux/.acl-$target.new" "$ESP_MNT/EFI/Linux/acl-$target+$tries-0.efi" || die "cannot install the entry"
  sync
  # 4. the GPT follows: the new slot first with its tries, the running one the fallback
  set_slot_attrs "$target" 2 "$tries" 0
  set_slot_attrs "$me" 1 0 1
  rm -rf "$work"
  say "installed $name $version in slot $target with $tries tries; boots next: acl-$target+$tries-0.efi (slot $me stays the fallback)"
}

case "${1:-}" in
  apply) shift; cmd_apply "$@" ;;
  vercmp) vercmp "${2:-}" "${3:-}" ;;
  pe-signed) pe_signed_ "${2:?usage: acl-ab pe-signed FILE OFFSET}" "${3:-0}" ;;
  health) cmd_health ;;
  bless) cmd_bless ;;
  sync) cmd_sync ;;
  boot) cmd_boot ;;
  *) die "usage: acl-ab health|bless|sync|boot|apply PAYLOAD" ;;
esac
