#!/bin/sh
# minivirt (recipes/debian/build-debian.sh): cloud-init's systemd generator, in place of
# Debian's (/lib/systemd/system-generators/cloud-init-generator), which asks ds-identify
# whether a datasource is there: a ~2000-line shell script, ~1 s of a TCG boot's first second
# of systemd, whose answer on this image is always yes (the datasource list is set: NoCloud,
# or None; ds-identify.cfg says "policy: enabled"). The rest is Debian's decision: the last
# cloud-init=enabled|disabled on the kernel command line, else /etc/cloud/cloud-init.enabled,
# else /etc/cloud/cloud-init.disabled, else enabled.
early=${2:?usage: cloud-init-generator NORMAL EARLY LATE}
if [ -n "${KERNEL_CMDLINE+x}" ]; then cmdline=$KERNEL_CMDLINE; else read -r cmdline < /proc/cmdline; fi
cmdline=" $cmdline "
case "$cmdline" in
  *" cloud-init="*) tok=${cmdline##* cloud-init=}; tok=${tok%% *} ;;
  *) tok= ;;
esac
if [ "$tok" = enabled ] || [ "$tok" = disabled ]; then
  result=$tok
elif [ -f /etc/cloud/cloud-init.enabled ]; then
  result=enabled
elif [ -f /etc/cloud/cloud-init.disabled ]; then
  result=disabled
else
  result=enabled
fi
link=$early/multi-user.target.wants/cloud-init.target
run=/run/cloud-init
mkdir -p "$run"
if [ "$result" = enabled ]; then
  mkdir -p "${link%/*}" && ln -snf /lib/systemd/system/cloud-init.target "$link"
  rm -f "$run/disabled"
  : > "$run/enabled"
else
  rm -f "$link" "$run/enabled"
  : > "$run/disabled"
fi
echo "minivirt cloud-init-generator: $result" > "$run/cloud-init-generator.log"
