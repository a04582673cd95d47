import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { defaultCacheDir, pruneCache, type PruneResult } from "../../services/cache.js";
import { formatBytes } from "../../util/size.js";

export default class CachePrune extends AclCommand<PruneResult> {
  static override summary = "Remove the least recently used cache items";
  static override description =
    "Removes stage entries beyond the N most recently used per stage (--keep), and the least recently used items until the cache is at most SIZE (--max-size), or everything (--all). Items used in the last 10 minutes stay: a build may be running beside this command. Builds keep the cache under ACL_CACHE_MAX_SIZE (default 40GiB) on their own.";

  static override examples = [
    "<%= config.bin %> cache prune --keep 1",
    "<%= config.bin %> cache prune --max-size 20GiB",
    "<%= config.bin %> cache prune --all --json",
  ];

  static override flags = {
    keep: Flags.integer({ description: "stage entries to keep per stage, most recently used first", min: 0 }),
    "max-size": Flags.string({ helpValue: "SIZE", description: "remove the least recently used items until the cache is at most this (for example 20GiB)" }),
    all: Flags.boolean({ description: "remove everything not used in the last 10 minutes" }),
    "cache-dir": Flags.string({ description: "the cache folder (default $ACL_CACHE_DIR or ~/.cache/acl)" }),
  };

  async run(): Promise<PruneResult> {
    const { flags } = await this.parse(CachePrune);
    const r = await pruneCache({ root: flags["cache-dir"] ?? defaultCacheDir(), keep: flags.keep, maxSize: flags["max-size"], all: flags.all });
    if (!this.jsonEnabled()) {
      this.log(`removed ${r.removed.length} items (${formatBytes(r.freedBytes)}); the cache now holds ${formatBytes(r.totalBytes)}${r.keptRecent ? `; ${r.keptRecent} used in the last 10 minutes kept` : ""}`);
    }
    return r;
  }
}
