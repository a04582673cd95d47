# shellcheck shell=bash
# Part of the scripts `acl aks plan` generates (inlined into rollout.sh).
# node_image_upgrade POOL TARGET_NODE_IMAGE
node_image_upgrade() {
  local current latest
  pool_get current "$1" nodeImageVersion
  if [ "$current" = "$2" ]; then log "agent pool $1: already on node image $2"; return 0; fi
  pool_upgrades latest "$1" latestNodeImageVersion
  [ "$latest" = "$2" ] || die "agent pool $1: AKS offers node image $latest here, the plan expects $2; wait for the release to reach the region, or plan again"
  wait_pool "$1"
  change az aks nodepool upgrade -g "$RG" --cluster-name "$CLUSTER" -n "$1" --node-image-only --no-wait --yes
  wait_pool "$1"
  wait_nodes_ready "$1"
  if [ "$DRY_RUN" = 0 ]; then
    pool_get current "$1" nodeImageVersion
    [ "$current" = "$2" ] || die "agent pool $1: on node image $current after the upgrade, expected $2"
  fi
}

# blue_green OLD NEW NEW_BODY DRAIN_TIMEOUT_MINUTES SOAK_MINUTES BATCH_SIZE
blue_green() {
  local autoscale
  if pool_exists "$2"; then
    log "agent pool $2: exists"
  else
    put_pool "$2" "$3"
  fi
  wait_pool "$2"
  wait_nodes_ready "$2"
  if ! pool_exists "$1"; then log "agent pool $1: already replaced by $2"; return 0; fi
  pool_get autoscale "$1" enableAutoScaling
  if is_true "$autoscale"; then
    # the autoscaler would otherwise add nodes to the pool being drained
    change az aks nodepool update -g "$RG" --cluster-name "$CLUSTER" -n "$1" --disable-cluster-autoscaler
    wait_pool "$1"
  fi
  cordon_pool "$1"
  drain_pool "$1" "$4" "$5" "$6"
  delete_pool "$1"
}
