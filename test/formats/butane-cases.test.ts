/**
 * The translation table: cases restated from coreos/butane's own translate
 * tests (base/v0_4, base/v0_5) and the behaviour of its flatcar variant, in
 * test/fixtures/butane/cases.json. Each case: a Butane config, the files of
 * its files dir (contents, modes, links, folders), and either the Ignition
 * config butane writes (exact key order; gzip sources compared decoded, as
 * Go's and Node's gzip bytes differ) or the error, with its YAML path, line
 * and column. Warnings butane itself gives are matched by path and position.
 */
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { fromDataUrl } from "../../src/formats/butane/dataurl.js";
import { goJson, translateButane } from "../../src/formats/butane/translate.js";
import { filesDirView } from "../../src/services/butane.js";
import { CASES, filesDir, type Where } from "../helpers/butane.js";

/**
 * Where acl means to differ from butane: sections that need acl's disk stage or kernel arguments are
 * refused for now (the scope), at the section's path.
 */
const ACL_REFUSES: Record<string, string> = {
  "kernel-arguments": "$.kernel_arguments",
  "luks-clevis-refused": "$.storage.luks",
  "luks-without-clevis": "$.storage.luks",
};

/** Replace gzip data URLs by their decoded text, the way the table writes them. */
function decodeGzip(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeGzip);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) {
      if (k === "source" && typeof x === "string" && o.compression === "gzip" && x.startsWith("data:;base64,")) {
        let decoded: string;
        try {
          decoded = gunzipSync(fromDataUrl(x)!).toString("utf8");
        } catch {
          decoded = fromDataUrl(x)!.toString("utf8");
        }
        out[k] = { gzip: true, decoded };
      } else out[k] = decodeGzip(x);
    }
    return out;
  }
  return v;
}

describe("Butane → Ignition: butane's translate cases", () => {
  it("the table covers both versions, errors, warnings, trees, mount units and gzip", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CASES.map((c) => c.version))).toEqual(new Set(["1.0.0", "1.1.0"]));
    expect(CASES.some((c) => c.error)).toBe(true);
    expect(CASES.some((c) => c.warnings?.some((w) => w.origin !== "ignition-validator"))).toBe(true);
    expect(CASES.some((c) => c.gzip)).toBe(true);
  });

  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_n, c) => {
    const dir = c.files_dir ? await filesDir(c) : undefined;
    const r = await translateButane(c.butane, { files: dir ? filesDirView(dir) : undefined, filesDirName: dir });
    const errors = r.reports.filter((x) => x.kind === "error");
    const warnings = r.reports.filter((x) => x.kind === "warning");
    const ours = (w: { path: string; position?: { line: number; column: number } }) => `${w.path} ${w.position?.line ?? "?"}:${w.position?.column ?? "?"}`;
    const theirs = (w: Where) => `${w.path} ${w.line ?? "?"}:${w.column ?? "?"}`;
    const expectedWarnings = (c.warnings ?? []).filter((w) => w.origin !== "ignition-validator");
    if (ACL_REFUSES[c.name]) {
      expect(r.config).toBeUndefined();
      expect(errors.map((e) => e.path)).toContain(ACL_REFUSES[c.name]);
      expect(errors[0]!.message).toMatch(/not supported by acl yet/);
      return;
    }
    if (c.strict) {
      // the translation itself succeeds; --strict turns its warnings into the failure (services/butane.ts)
      expect(warnings.map(ours).sort()).toEqual(expectedWarnings.map(theirs).sort());
      expect(warnings.length).toBeGreaterThan(0);
      return;
    }
    if (c.error) {
      expect(r.config, JSON.stringify(r.config)).toBeUndefined();
      expect(errors.length, JSON.stringify(r.reports)).toBeGreaterThan(0);
      // errors butane reports without a path (unknown variant or version, a config it cannot parse) name one here
      const where = [c.error, ...(c.error.more ?? [])].filter((w) => w.path);
      if (where.length) expect(where.map(theirs), JSON.stringify(r.reports)).toContain(ours(errors[0]!));
      return;
    }
    expect(errors, JSON.stringify(errors)).toEqual([]);
    expect(warnings.map(ours).sort()).toEqual(expectedWarnings.map(theirs).sort());
    if (c.gzip) expect(decodeGzip(r.config)).toEqual(c.ignition);
    else {
      expect(r.config).toEqual(c.ignition);
      // key order and escaping too: butane's bytes
      if (c.stdout !== undefined) expect(goJson(r.config, c.pretty)).toBe(c.stdout);
    }
  });
});
