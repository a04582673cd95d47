import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { fromDataUrl, percentEncode, toDataUrl } from "../../src/formats/butane/dataurl.js";
import { parseButaneYaml } from "../../src/formats/butane/yaml.js";

describe("Butane YAML (YAML 1.1 scalars, positions)", () => {
  const text = ["variant: flatcar", "version: 1.0.0", "storage:", "  files:", "    - path: /a", "      mode: 0644", "    - path: /b", "      mode: 644", ""].join("\n");

  it("reads 0644 as octal (420) and 644 as decimal", () => {
    const d = parseButaneYaml(text);
    expect(d.value).toEqual({ variant: "flatcar", version: "1.0.0", storage: { files: [{ path: "/a", mode: 420 }, { path: "/b", mode: 644 }] } });
  });

  it("gives each value, sequence item and key its 1-based line and column", () => {
    const d = parseButaneYaml(text);
    // values (where butane reports a bad value) and items
    expect(d.positions.get("$.variant")).toEqual({ line: 1, column: 10 });
    expect(d.positions.get("$.storage.files")).toEqual({ line: 5, column: 5 });
    expect(d.positions.get("$.storage.files.0")).toEqual({ line: 5, column: 7 });
    expect(d.positions.get("$.storage.files.0.path")).toEqual({ line: 5, column: 13 });
    expect(d.positions.get("$.storage.files.1.mode")).toEqual({ line: 8, column: 13 });
    // keys (where butane reports an unused one)
    expect(d.keyPositions.get("$.variant")).toEqual({ line: 1, column: 1 });
    expect(d.keyPositions.get("$.storage.files")).toEqual({ line: 4, column: 3 });
    expect(d.keyPositions.get("$.storage.files.1.mode")).toEqual({ line: 8, column: 7 });
  });

  it("reports invalid YAML with its line, and refuses more than one document", () => {
    expect(() => parseButaneYaml("a: [1, 2\nb: 3\n")).toThrow(/invalid YAML/);
    try {
      parseButaneYaml("variant: flatcar\n  bad: indent\n");
    } catch (e) {
      expect((e as { position?: { line: number } }).position?.line).toBeGreaterThan(0);
    }
    expect(() => parseButaneYaml("a: 1\n---\nb: 2\n")).toThrow(/more than one YAML document/);
  });
});

describe("data URLs as butane chooses them", () => {
  it("percent-encodes all but RFC 2396's unreserved characters", () => {
    expect(percentEncode(Buffer.from("Az09-_.!~*'() /:é\n"))).toBe("Az09-_.!~*'()%20%2F%3A%C3%A9%0A");
  });

  it("plain when that is shortest; compression \"\" written where it was allowed", () => {
    expect(toDataUrl(Buffer.from("hello world"), { allowCompression: true })).toEqual({ source: "data:,hello%20world", compression: "" });
    expect(toDataUrl(Buffer.from("hello world"), { allowCompression: false })).toEqual({ source: "data:,hello%20world" });
  });

  it("base64 when strictly shorter than the plain form", () => {
    const bin = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]);
    const r = toDataUrl(bin, { allowCompression: true });
    expect(r).toEqual({ source: `data:;base64,${bin.toString("base64")}`, compression: "" });
    expect(fromDataUrl(r.source)).toEqual(bin);
  });

  it("gzip + base64 when that plus 4 is still shorter; the decoded bytes are the content", () => {
    const text = "a line that repeats\n".repeat(200);
    const r = toDataUrl(Buffer.from(text), { allowCompression: true });
    expect(r.compression).toBe("gzip");
    expect(gunzipSync(fromDataUrl(r.source)!).toString()).toBe(text);
    // not for resources that cannot be compressed (systemd units, merged configs)
    expect(toDataUrl(Buffer.from(text), { allowCompression: false }).compression).toBeUndefined();
  });

  it("round-trips the plain form", () => {
    for (const s of ["", "x", "a b\nc", "100%", "ünïcødé"]) expect(fromDataUrl(toDataUrl(Buffer.from(s), { allowCompression: false }).source)!.toString()).toBe(s);
  });
});
