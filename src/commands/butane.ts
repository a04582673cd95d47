import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../lib/base-command.js";
import { formatReport, translateButaneFile, type ButaneResult } from "../services/butane.js";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export default class Butane extends AclCommand<Omit<ButaneResult, "json"> & { config?: unknown }> {
  static override summary = "Translate a Butane config to Ignition";
  static override description =
    "Translates a Butane YAML config (variant flatcar 1.0.0 or 1.1.0, fcos 1.4.0 or 1.5.0) into the Ignition config (3.3.0 or 3.4.0) that acl images apply at first boot, as coreos/butane does: data URLs for inline and local contents, trees, mount units, users and ssh keys. Problems are reported with their YAML path, line and column; unused keys are warnings (an error with --strict). Reads FILE, or stdin when FILE is - or absent; writes to -o OUT (by rename) or stdout.";
  static override examples = [
    "<%= config.bin %> butane butane/container-host.bu -d butane -o out/container-host.ign",
    "<%= config.bin %> butane --check --strict butane/container-host.bu -d butane",
    "cat node.bu | <%= config.bin %> butane --pretty",
  ];
  static override args = {
    file: Args.string({ description: "Butane config (YAML); - or absent: stdin", required: false, ignoreStdin: true }),
  };
  static override flags = {
    output: Flags.string({ char: "o", description: "write the Ignition config here (default: stdout)" }),
    "files-dir": Flags.string({ char: "d", description: "folder that local, trees, contents_local and ssh_authorized_keys_local paths are relative to" }),
    strict: Flags.boolean({ description: "fail on warnings" }),
    pretty: Flags.boolean({ char: "p", description: "indent the output" }),
    check: Flags.boolean({ description: "validate only; write nothing" }),
  };

  async run() {
    const { args, flags } = await this.parse(Butane);
    const name = args.file && args.file !== "-" ? args.file : "-";
    const input = name === "-" ? { text: await readStdin(), name } : { path: name };
    const r = await translateButaneFile({ input, filesDir: flags["files-dir"], strict: flags.strict, pretty: flags.pretty, check: flags.check, output: flags.output });
    for (const w of r.warnings) process.stderr.write(`${formatReport(name, w)}\n`);
    if (!this.jsonEnabled()) {
      if (flags.check) this.log(`${name}: ok (Ignition ${r.ignitionVersion}${r.warnings.length ? `, ${r.warnings.length} warning(s)` : ""})`);
      else if (!flags.output) process.stdout.write(r.json);
    }
    const { json, ...rest } = r;
    return { ...rest, config: flags.check ? undefined : JSON.parse(json) };
  }
}
