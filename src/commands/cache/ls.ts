import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { defaultCacheDir, defaultMaxBytes, listCache, type CacheListResult } from "../../services/cache.js";
import { formatAge, formatBytes } from "../../util/size.js";

export default class CacheLs extends AclCommand<CacheListResult> {
  static override summary = "List what the build cache holds, with sizes and ages";
  static override description =
    "Lists the stage cache: each stage entry (rootfs, usr, …), downloaded packages, unpacked kernels and unfinished scratch folders, with the space each takes on disk and when it was last used, most recent first, and the total against the cache's size bound (ACL_CACHE_MAX_SIZE, default 40GiB).";

  static override examples = ["<%= config.bin %> cache ls", "<%= config.bin %> cache ls --cache-dir /var/cache/acl --json"];

  static override flags = {
    "cache-dir": Flags.string({ description: "the cache folder (default $ACL_CACHE_DIR or ~/.cache/acl)" }),
  };

  async run(): Promise<CacheListResult> {
    const { flags } = await this.parse(CacheLs);
    const r = await listCache(flags["cache-dir"] ?? defaultCacheDir(), defaultMaxBytes());
    if (!this.jsonEnabled()) {
      const now = Date.now();
      this.log(`${r.root}: ${r.items.length} items, ${formatBytes(r.totalBytes)} of ${formatBytes(r.maxBytes)}`);
      for (const i of r.items) this.log(`  ${i.kind.padEnd(8)} ${i.name.padEnd(40)} ${formatBytes(i.bytes).padStart(10)}  ${formatAge(now - i.usedMs)}`);
    }
    return r;
  }
}
