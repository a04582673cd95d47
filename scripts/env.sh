# Sourced by the scripts: puts the project's Node (if installed by setup.sh) and sbin on PATH.
_acl_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$_acl_root/.tools/node/node_modules/.bin/node" ]; then
  export PATH="$_acl_root/.tools/node/node_modules/.bin:$PATH"
fi
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
