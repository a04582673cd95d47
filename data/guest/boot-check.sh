#!/bin/sh
# acl boot check (data/guest/boot-check.sh, installed as /usr/lib/acl/boot-check).
# Prints ACL-CHECK lines on the console when the boot test asks for it
# (acl.boot-check=1 on the kernel command line or as an SMBIOS type 11 string),
# then powers off. Otherwise it does nothing.
# Usage: boot-check busybox | boot-check systemd [UNIT...]
#   UNIT: the units the image spec enables; each must be active (or have run and
#   succeeded, for a oneshot) once the system is up.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
INIT_KIND="${1:-busybox}"
[ $# -gt 0 ] && shift
UNITS="$*"

# the words of the kernel command line and the SMBIOS type 11 strings, one per line
requests() {
  read -r cmdline < /proc/cmdline
  for w in $cmdline; do echo "$w"; done
  for f in /sys/firmware/dmi/entries/11-*/raw; do
    [ -r "$f" ] || continue
    # the structure's strings follow a 5-byte header, NUL-separated
    tr '\000' '\n' < "$f"
  done
}
requests | grep -q "acl\\.boot-check=1$" || exit 0

if [ -w /dev/console ]; then exec >/dev/console 2>&1; fi
failures=0
check() { # name status detail...
  name="$1"; status="$2"; shift 2
  [ "$status" = fail ] && failures=$((failures + 1))
  echo "ACL-CHECK $name $status $*"
}

# a unit's ActiveState, Result and when it last went inactive (0: never), into st, res and left
unit_state() {
  st=""; res=""; left=0
  while IFS='=' read -r k v; do
    case "$k" in
      ActiveState) st="$v" ;;
      Result) res="$v" ;;
      InactiveEnterTimestampMonotonic) left="$v" ;;
    esac
  done <<EOF
$(systemctl show -p ActiveState -p Result -p InactiveEnterTimestampMonotonic "$1" 2>/dev/null)
EOF
}

check userspace ok "$(uname -r) pid1=$(cat /proc/1/comm 2>/dev/null)"

# the boot test's on-node update: acl.boot-check.apply=DEVICE runs the image's own updater on it first
apply_dev=$(requests | sed -n 's/.*acl\.boot-check\.apply=\(\/dev\/[a-z0-9]*\)$/\1/p' | head -n 1)
if [ -n "$apply_dev" ]; then
  # its lines go to the console as they come (the boot test stops QEMU on some of them)
  { /usr/lib/acl/acl-update apply "$apply_dev"; echo $? >/run/acl-apply.rc; } 2>&1 | tee /run/acl-apply.log
  last=$(tail -n 1 /run/acl-apply.log)
  if [ "$(cat /run/acl-apply.rc)" = 0 ]; then check update-apply ok "$last"; else check update-apply fail "$last"; fi
fi

# /usr: read-only, from a dm-verity device
usr_dev=""; usr_fs=""; usr_opts=""
while read -r dev mnt fs opts rest; do
  [ "$mnt" = /usr ] && { usr_dev="$dev"; usr_fs="$fs"; usr_opts="$opts"; }
done < /proc/mounts
if [ -z "$usr_dev" ]; then
  check usr-verity fail "/usr is not a mount point"
else
  dm_uuid=""; dm_name=""
  want="${usr_dev#/dev/mapper/}"
  real=$(readlink -f "$usr_dev" 2>/dev/null)
  for d in /sys/block/dm-*; do
    [ -d "$d/dm" ] || continue
    n=$(cat "$d/dm/name"); u=$(cat "$d/dm/uuid")
    if [ "$n" = "$want" ] || [ "/dev/${d##*/}" = "$real" ] || [ "/dev/${d##*/}" = "$usr_dev" ]; then dm_name="$n"; dm_uuid="$u"; fi
  done
  case "$usr_opts" in ro|ro,*) ro=yes ;; *) ro=no ;; esac
  case "$dm_uuid" in
    CRYPT-VERITY-*) verity=yes ;;
    *) verity=no ;;
  esac
  if [ "$ro" = yes ] && [ "$verity" = yes ]; then
    check usr-verity ok "$usr_dev $usr_fs ro dm=$dm_name uuid=$dm_uuid"
  else
    check usr-verity fail "$usr_dev $usr_fs opts=$usr_opts dm=${dm_name:-none} uuid=${dm_uuid:-none}"
  fi
fi

# no package manager
found=""
# look for files, not "command -v": busybox sh would report its own dpkg/rpm applets
for pm in dpkg apt apt-get rpm dnf yum apk; do
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    if [ -e "$d/$pm" ] || [ -L "$d/$pm" ]; then found="$found $d/$pm"; break; fi
  done
done
if [ -z "$found" ]; then check no-pkg-manager ok "none of: dpkg apt apt-get rpm dnf yum apk"; else check no-pkg-manager fail "found:$found"; fi

# glibc-hwcaps levels the dynamic loader accepts on this CPU
ld=""
for l in /usr/lib64/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
  [ -e "$l" ] && { ld="$l"; break; }
done
if [ -z "$ld" ]; then
  check hwcaps skip "no glibc dynamic loader in the image"
else
  levels=""
  "$ld" --help 2>/dev/null > /tmp/.acl-ldso-help
  while read -r lvl rest; do
    case "$rest" in
      *supported*)
        echo "ACL-INFO hwcaps-line $lvl $rest"
        case "$lvl" in x86-64-v*) levels="$levels $lvl" ;; esac ;;
    esac
  done < /tmp/.acl-ldso-help
  rm -f /tmp/.acl-ldso-help
  check hwcaps ok "supported:${levels:- none}"
fi

if [ "$INIT_KIND" = systemd ]; then
  state=$(timeout 300 systemctl is-system-running --wait 2>/dev/null)
  if [ "$state" = running ]; then check multi-user ok "$state"; else check multi-user fail "${state:-timeout}"; fi
  failed=$(systemctl --failed --no-legend --plain 2>/dev/null | while read -r u rest; do printf ' %s' "$u"; done)
  if [ -z "$failed" ]; then check failed-units ok none; else check failed-units fail "$failed"; fi
  not_up=""
  for u in $UNITS; do
    unit_state "$u"
    # active, or a oneshot that ran (it went inactive at some point) and succeeded
    if [ "$st" = active ] || { [ "$st" = inactive ] && [ "$res" = success ] && [ "${left:-0}" != 0 ]; }; then continue; fi
    not_up="$not_up $u=${st:-unknown}/${res:-unknown}"
  done
  if [ -n "$not_up" ]; then check enabled-units fail "not active:$not_up"
  elif [ -n "$UNITS" ]; then check enabled-units ok "$UNITS"
  else check enabled-units ok none; fi
else
  check init ok "busybox pid1=$(cat /proc/1/comm 2>/dev/null)"
fi

# Secure Boot as the kernel saw it, and PCR 11 (systemd-stub's measurement of the UKI): reported, the boot test judges them
sb=$(dmesg 2>/dev/null | sed -n 's/.*secureboot: //p' | head -n 1)
check secureboot ok "${sb:-not reported by the kernel}"
pcr=/sys/class/tpm/tpm0/pcr-sha256/11
if [ -r "$pcr" ]; then check pcr11 ok "$(cat "$pcr")"; else check pcr11 skip "no TPM 2.0 with a sha256 bank"; fi

# What Ignition left, as `acl boot-test --ignition` asks for it through fw_cfg: one probe per line
# ("file PATH", "dir PATH", "link PATH", "hardlink PATH TARGET", "user NAME", "group NAME",
# "unit NAME", "dropin UNIT NAME"); each answer is an ACL-IGN line of facts the host compares
# with the config. Paths have no spaces (the host does not ask about others).
probes=/sys/firmware/qemu_fw_cfg/by_name/opt/dev.acl/ignition-probes/raw
sha() { sha256sum < "$1" | cut -d' ' -f1; }
owner() { stat -c '%a %u %g %U %G' "$1"; }
if [ -r "$probes" ]; then
  n=0
  while read -r kind a b; do
    [ -n "$kind" ] || continue
    n=$((n + 1))
    case "$kind" in
      file)
        if [ -L "$a" ] || [ ! -f "$a" ]; then echo "ACL-IGN file $a missing"
        else echo "ACL-IGN file $a $(owner "$a") $(sha "$a")"; fi ;;
      dir)
        if [ -L "$a" ] || [ ! -d "$a" ]; then echo "ACL-IGN dir $a missing"
        else echo "ACL-IGN dir $a $(owner "$a")"; fi ;;
      link)
        if [ -L "$a" ]; then echo "ACL-IGN link $a $(readlink "$a")"; else echo "ACL-IGN link $a missing"; fi ;;
      hardlink)
        if [ -f "$a" ] && [ -f "$b" ]; then echo "ACL-IGN hardlink $a $(stat -c %i "$a") $(stat -c %i "$b")"; else echo "ACL-IGN hardlink $a missing"; fi ;;
      user)
        entry=$(grep "^$a:" /etc/passwd | head -n 1)
        if [ -z "$entry" ]; then echo "ACL-IGN user $a missing"; continue; fi
        uid=$(echo "$entry" | cut -d: -f3); gid=$(echo "$entry" | cut -d: -f4)
        home=$(echo "$entry" | cut -d: -f6); shell=$(echo "$entry" | cut -d: -f7)
        echo "ACL-IGN user $a $uid $gid $home $shell $(id -Gn "$a" | tr ' ' ',')"
        keys="$home/.ssh/authorized_keys"
        if [ -f "$keys" ]; then
          echo "ACL-IGN keysfile $a $(owner "$keys")"
          while IFS= read -r k; do
            [ -n "$k" ] || continue
            case "$k" in "#"*) continue ;; esac
            echo "ACL-IGN key $a $(printf '%s' "$k" | sha256sum | cut -d' ' -f1)"
          done < "$keys"
        fi ;;
      group)
        entry=$(grep "^$a:" /etc/group | head -n 1)
        if [ -z "$entry" ]; then echo "ACL-IGN group $a missing"; else echo "ACL-IGN group $a $(echo "$entry" | cut -d: -f3)"; fi ;;
      unit)
        unit_state "$a"
        f="/etc/systemd/system/$a"
        if [ -f "$f" ] && [ ! -L "$f" ]; then us=$(sha "$f"); else us=-; fi
        en=$(systemctl is-enabled "$a" 2>/dev/null)
        echo "ACL-IGN unit $a ${en:-unknown} ${st:-unknown} ${res:-unknown} ${left:-0} $us" ;;
      dropin)
        f="/etc/systemd/system/$a.d/$b"
        if [ ! -f "$f" ]; then echo "ACL-IGN dropin $a $b missing"; continue; fi
        case " $(systemctl show -p DropInPaths --value "$a" 2>/dev/null) " in
          *" $f "*) loaded=loaded ;;
          *) loaded=not-loaded ;;
        esac
        echo "ACL-IGN dropin $a $b $(sha "$f") $loaded" ;;
      *) echo "ACL-IGN unknown $kind" ;;
    esac
  done < "$probes"
  echo "ACL-IGN done $n"
fi

echo "ACL-CHECK done $failures"
sync
if [ "$INIT_KIND" = systemd ]; then
  systemctl poweroff --no-block
else
  poweroff
fi
