# shellcheck shell=bash
# Part of the scripts `acl aks plan` generates (inlined into rollback.sh).
# undo_node_image POOL ORIGINAL_NODE_IMAGE BODY
undo_node_image() {
  local current recent
  pool_get current "$1" nodeImageVersion
  if [ "$current" = "$2" ]; then log "agent pool $1: already on node image $2"; return 0; fi
  pool_upgrades recent "$1" 'recentlyUsedVersions[].nodeImageVersion'
  printf '%s\n' "$recent" | grep -qxF "$2" ||
    die "agent pool $1: node image $2 is not in the pool's recentlyUsedVersions, AKS cannot roll back to it"
  wait_pool "$1"
  put_pool "$1" "$3"
  wait_pool "$1"
  wait_nodes_ready "$1"
}

# undo_blue_green OLD NEW OLD_BODY DRAIN_TIMEOUT_MINUTES SOAK_MINUTES AUTOSCALE(0|1) MIN MAX BATCH_SIZE
undo_blue_green() {
  local autoscale
  if pool_exists "$1"; then
    wait_pool "$1"
    uncordon_pool "$1"
    pool_get autoscale "$1" enableAutoScaling
    if [ "$6" = 1 ] && ! is_true "$autoscale"; then
      change az aks nodepool update -g "$RG" --cluster-name "$CLUSTER" -n "$1" --enable-cluster-autoscaler --min-count "$7" --max-count "$8"
      wait_pool "$1"
    fi
  else
    put_pool "$1" "$3"
    wait_pool "$1"
  fi
  wait_nodes_ready "$1"
  if pool_exists "$2"; then
    cordon_pool "$2"
    drain_pool "$2" "$4" "$5" "$9"
    delete_pool "$2"
  else
    log "agent pool $2: not there, nothing to remove"
  fi
}
