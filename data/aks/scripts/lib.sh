# shellcheck shell=bash
# Part of the scripts `acl aks plan` generates (inlined into rollout.sh / rollback.sh).
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# A change: run it, or print it under --dry-run.
change() {
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

is_true() { case "$1" in true|True) return 0 ;; *) return 1 ;; esac; }

# Every query stores its answer with printf -v and dies itself when the tool
# fails, so a failed lookup can never be mistaken for "absent" or "not done".

# pool_exists POOL
pool_exists() {
  local found
  found="$(az aks nodepool list -g "$RG" --cluster-name "$CLUSTER" --query "[?name=='$1'].name" -o tsv)" ||
    die "az aks nodepool list failed for cluster $CLUSTER"
  [ -n "$found" ]
}

# pool_get VAR POOL QUERY
pool_get() {
  local out
  out="$(az aks nodepool show -g "$RG" --cluster-name "$CLUSTER" -n "$2" --query "$3" -o tsv)" ||
    die "az aks nodepool show failed for agent pool $2"
  printf -v "$1" '%s' "$out"
}

# pool_upgrades VAR POOL QUERY (az aks nodepool get-upgrades)
pool_upgrades() {
  local out
  out="$(az aks nodepool get-upgrades -g "$RG" --cluster-name "$CLUSTER" --nodepool-name "$2" --query "$3" -o tsv)" ||
    die "az aks nodepool get-upgrades failed for agent pool $2"
  printf -v "$1" '%s' "$out"
}

# pool_url VAR POOL
pool_url() {
  printf -v "$1" 'https://management.azure.com/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerService/managedClusters/%s/agentPools/%s?api-version=%s' \
    "$SUBSCRIPTION" "$RG" "$CLUSTER" "$2" "$API_VERSION"
}

# node_status VAR SELECTOR: "NODE READY-STATUS" lines for the nodes matching a label selector.
node_status() {
  local out
  out="$(kubectl get nodes -l "$2" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')" ||
    die "kubectl get nodes -l $2 failed"
  printf -v "$1" '%s' "$out"
}

# pool_nodes ARRAY POOL: the names of the pool's nodes.
pool_nodes() {
  local out line
  local -n into="$1"
  out="$(kubectl get nodes -l "kubernetes.azure.com/agentpool=$2" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')" ||
    die "kubectl get nodes for agent pool $2 failed"
  into=()
  while IFS= read -r line; do
    [ -z "$line" ] || into+=("$line")
  done <<<"$out"
}

# node_cordoned NODE: true when spec.unschedulable is set.
node_cordoned() {
  local out
  out="$(kubectl get node "$1" -o jsonpath='{.spec.unschedulable}')" || die "kubectl get node $1 failed"
  is_true "$out"
}

# count_ready LINES TOTAL_VAR READY_VAR: count "NODE STATUS" lines, and those with STATUS True.
count_ready() {
  local line all=0 ok=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    all=$((all + 1))
    if [ "${line##* }" = True ]; then ok=$((ok + 1)); fi
  done <<<"$1"
  printf -v "$2" '%s' "$all"
  printf -v "$3" '%s' "$ok"
}

# Wait until the agent pool's provisioningState is Succeeded.
wait_pool() {
  local state until
  if [ "$DRY_RUN" = 1 ]; then printf 'would wait: agent pool %s provisioningState Succeeded\n' "$1"; return 0; fi
  until=$((EPOCHSECONDS + WAIT_MINUTES * 60))
  while :; do
    pool_get state "$1" provisioningState
    case "$state" in
      Succeeded) log "agent pool $1: Succeeded"; return 0 ;;
      Failed|Canceled) die "agent pool $1 is $state: az aks nodepool show -g $RG --cluster-name $CLUSTER -n $1" ;;
    esac
    [ "$EPOCHSECONDS" -lt "$until" ] || die "agent pool $1: still $state after $WAIT_MINUTES minutes"
    sleep "$POLL_SECONDS"
  done
}

wait_pool_gone() {
  local until
  if [ "$DRY_RUN" = 1 ]; then printf 'would wait: agent pool %s deleted\n' "$1"; return 0; fi
  until=$((EPOCHSECONDS + WAIT_MINUTES * 60))
  while pool_exists "$1"; do
    [ "$EPOCHSECONDS" -lt "$until" ] || die "agent pool $1: not deleted after $WAIT_MINUTES minutes"
    sleep "$POLL_SECONDS"
  done
  log "agent pool $1: deleted"
}

# Wait until the pool has as many Ready nodes as its count and none that is not Ready.
wait_nodes_ready() {
  local want lines ready total until
  if [ "$DRY_RUN" = 1 ]; then printf 'would wait: nodes of agent pool %s Ready\n' "$1"; return 0; fi
  until=$((EPOCHSECONDS + WAIT_MINUTES * 60))
  while :; do
    pool_get want "$1" count
    node_status lines "kubernetes.azure.com/agentpool=$1"
    count_ready "$lines" total ready
    if [ "$ready" -ge "$want" ] && [ "$ready" -eq "$total" ]; then log "agent pool $1: $ready/$want nodes Ready"; return 0; fi
    [ "$EPOCHSECONDS" -lt "$until" ] || die "agent pool $1: $ready of $want nodes Ready after $WAIT_MINUTES minutes"
    sleep "$POLL_SECONDS"
  done
}

# At least one System-mode node must be Ready before any step starts.
require_system_ready() {
  local lines total ready
  node_status lines "kubernetes.azure.com/mode=system"
  count_ready "$lines" total ready
  [ "$ready" -gt 0 ] || die "no Ready node in any System pool: stopping before the next step (rule: keep-system-pool)"
}

cordon_pool() {
  local node
  local -a nodes
  pool_nodes nodes "$1"
  for node in "${nodes[@]}"; do
    if node_cordoned "$node"; then
      log "node $node: already cordoned"
    else
      change kubectl cordon "$node"
    fi
  done
}

uncordon_pool() {
  local node
  local -a nodes
  pool_nodes nodes "$1"
  for node in "${nodes[@]}"; do
    if node_cordoned "$node"; then change kubectl uncordon "$node"; fi
  done
}

# drain_pool POOL DRAIN_TIMEOUT_MINUTES SOAK_MINUTES BATCH_SIZE: BATCH_SIZE nodes per kubectl drain,
# soaking after each batch.
drain_pool() {
  local i
  local -a nodes
  pool_nodes nodes "$1"
  for ((i = 0; i < ${#nodes[@]}; i += $4)); do
    change kubectl drain "${nodes[@]:i:$4}" --ignore-daemonsets --delete-emptydir-data --timeout="$2m"
    if [ "$3" -gt 0 ]; then change sleep "$(( $3 * 60 ))"; fi
  done
}

delete_pool() {
  if pool_exists "$1"; then
    wait_pool "$1"
    change az aks nodepool delete -g "$RG" --cluster-name "$CLUSTER" -n "$1" --no-wait
    wait_pool_gone "$1"
  else
    log "agent pool $1: already deleted"
  fi
}

# put_pool POOL BODY: create or update a pool from a PUT body in this folder.
put_pool() {
  local url
  [ -f "$HERE/$2" ] || die "missing $HERE/$2: run the script from the folder acl aks plan wrote"
  pool_url url "$1"
  change az rest --method put --url "$url" --body "@$HERE/$2"
}

wave_done() {
  require_system_ready
  log "wave $1 done"
  if [ "$MAX_WAVES" -gt 0 ] && [ "$1" -ge "$MAX_WAVES" ]; then
    log "stopping after wave $1 as asked (--waves $MAX_WAVES); run again without --waves to continue"
    exit 0
  fi
}

preflight() {
  local state
  command -v az >/dev/null || die "az (Azure CLI) is not on PATH"
  command -v kubectl >/dev/null || die "kubectl is not on PATH (az aks install-cli)"
  state="$(az aks show -g "$RG" -n "$CLUSTER" --query provisioningState -o tsv)" || die "az aks show failed for cluster $CLUSTER in $RG"
  [ "$state" = Succeeded ] || die "cluster $CLUSTER is $state, not Succeeded: wait for the running operation to end"
  require_system_ready
}

# os_sku_update POOL SKU: in-place OS SKU change (rollout to the target, rollback to the original)
os_sku_update() {
  local current
  pool_get current "$1" osSku
  if [ "$current" = "$2" ]; then log "agent pool $1: already $2"; return 0; fi
  wait_pool "$1"
  change az aks nodepool update -g "$RG" --cluster-name "$CLUSTER" -n "$1" --os-sku "$2" --no-wait
  wait_pool "$1"
  wait_nodes_ready "$1"
}
