/**
 * Our Ignition output read by tools we did not write: every 3.3.0 config the
 * translation table produces passes Debian's ignition-validate (2.14), and
 * every 3.4.0 config validates against Ignition's published 3.4.0 JSON schema
 * (test/fixtures/ignition/, from coreos/ignition). A config the validator
 * must refuse is refused, so the check is not vacuous.
 */
import AjvDraft04 from "ajv-draft-04";
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { goJson, translateButane } from "../../src/formats/butane/translate.js";
import { filesDirView } from "../../src/services/butane.js";
import { CASES, filesDir } from "../helpers/butane.js";
import { REPO } from "../helpers/cli.js";

const schema34 = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/ignition/ignition-spec-3.4.0.schema.json"), "utf8")) as object;

async function translated(version: string): Promise<{ name: string; json: string }[]> {
  const out: { name: string; json: string }[] = [];
  for (const c of CASES.filter((x) => x.version === version && x.exit_code === 0 && !x.strict)) {
    const dir = c.files_dir ? await filesDir(c) : undefined;
    const r = await translateButane(c.butane, { files: dir ? filesDirView(dir) : undefined });
    if (r.config) out.push({ name: c.name, json: goJson(r.config) });
  }
  return out;
}

describe("Ignition output checked by Ignition's own validator and schema", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "acl-ign-validate-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("every 3.3.0 config passes Debian's ignition-validate", async () => {
    const configs = await translated("1.0.0");
    expect(configs.length).toBeGreaterThan(30);
    // the shipped configs, as users translate them (--strict: no warning either)
    const shipped = await translateButane(await readFile(join(REPO, "butane/container-host.bu"), "utf8"), { files: filesDirView(join(REPO, "butane/container-host")) });
    expect(shipped.reports).toEqual([]);
    configs.push({ name: "butane-container-host", json: goJson(shipped.config) });
    for (const c of configs) {
      const f = join(work, `${c.name}.ign`);
      await writeFile(f, c.json);
      const r = await execa("ignition-validate", [f], { reject: false });
      expect(r.exitCode, `${c.name}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(`${r.stdout}${r.stderr}`, c.name).not.toMatch(/error/i);
    }
    // and it is not a rubber stamp
    const bad = join(work, "bad.ign");
    await writeFile(bad, JSON.stringify({ ignition: { version: "3.3.0" }, storage: { files: [{ path: "relative/path" }] } }));
    expect((await execa("ignition-validate", [bad], { reject: false })).exitCode).not.toBe(0);
  }, 120_000);

  it("every 3.4.0 config validates against the Ignition 3.4.0 schema", async () => {
    const ajv = new AjvDraft04.default({ strict: false, allErrors: true });
    const validate = ajv.compile(schema34);
    const configs = await translated("1.1.0");
    expect(configs.length).toBeGreaterThan(5);
    for (const c of configs) {
      const ok = validate(JSON.parse(c.json));
      expect(ok, `${c.name}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      expect(JSON.parse(c.json).ignition.version).toBe("3.4.0");
    }
    expect(validate({ ignition: { version: "3.4.0" }, storage: { files: [{ mode: 420 }] } })).toBe(false);
  });
});
