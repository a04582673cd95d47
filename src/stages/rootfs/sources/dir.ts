/** The `dir` content source: a local folder copied over the tree (modes, owners, links kept). */
import { resolveSpecPath } from "../../../config/spec.js";
import type { Source } from "../../../config/spec-schema.js";
import { treeDigest } from "../../../util/hash.js";
import { copyTreeInto } from "../tree.js";
import type { SourceType } from "./source.js";

export const dirSource: SourceType<Extract<Source, { type: "dir" }>> = {
  requires: () => [],
  describe: (s) => `dir ${s.path}`,
  cacheInput: async (s, ctx) => ({ ...s, tree: await treeDigest(resolveSpecPath(ctx.spec.specDir, s.path)) }),
  async apply(s, ctx) {
    await copyTreeInto(resolveSpecPath(ctx.spec.specDir, s.path), ctx.root);
    return {};
  },
};
