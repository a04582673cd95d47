/**
 * The Butane specs acl translates, as zod schemas: flatcar 1.0.0 / fcos 1.4.0
 * (Ignition 3.3.0) and flatcar 1.1.0 / fcos 1.5.0 (Ignition 3.4.0, which add
 * `contents_local` for units and drop-ins and `ssh_authorized_keys_local`).
 * Objects are not strict: keys the schema does not know are reported as
 * butane reports them, as warnings ("unused key"), by `unusedKeys`.
 */
import { z } from "zod";

export const BUTANE_VERSIONS = {
  flatcar: { "1.0.0": "3.3.0", "1.1.0": "3.4.0" },
  fcos: { "1.4.0": "3.3.0", "1.5.0": "3.4.0" },
} as const;
export type Variant = keyof typeof BUTANE_VERSIONS;

/** Sections that need acl's disks stage or kernel arguments: refused for now. */
export const REFUSED_SECTIONS = ["storage.disks", "storage.raid", "storage.luks", "kernel_arguments", "boot_device"] as const;

const str = z.string();
const int = z.number().int();
/** A mode: YAML 1.1 reads 0644 as octal, but not 0o644, which butane (yaml.v3) also takes as octal. */
const mode = z.preprocess((v) => (typeof v === "string" && /^0o[0-7]+$/.test(v) ? parseInt(v.slice(2), 8) : v), int);
const bool = z.boolean();

const Verification = z.object({ hash: str.optional() });
const HttpHeader = z.object({ name: str, value: str.optional() });
const Resource = z.object({
  source: str.optional(),
  inline: str.optional(),
  local: str.optional(),
  compression: str.optional(),
  http_headers: z.array(HttpHeader).optional(),
  verification: Verification.optional(),
});

const NodeUser = z.object({ id: int.optional(), name: str.optional() });
const NodeGroup = z.object({ id: int.optional(), name: str.optional() });
const node = {
  path: str,
  overwrite: bool.optional(),
  user: NodeUser.optional(),
  group: NodeGroup.optional(),
};

const File = z.object({ ...node, contents: Resource.optional(), append: z.array(Resource).optional(), mode: mode.optional() });
const Directory = z.object({ ...node, mode: mode.optional() });
const Link = z.object({ ...node, target: str.optional(), hard: bool.optional() });
const Tree = z.object({ local: str.optional(), path: str.optional() });
const Filesystem = z.object({
  device: str,
  format: str.optional(),
  path: str.optional(),
  wipe_filesystem: bool.optional(),
  label: str.optional(),
  uuid: str.optional(),
  options: z.array(str).optional(),
  mount_options: z.array(str).optional(),
  with_mount_unit: bool.optional(),
});

export function butaneSchema(v34: boolean) {
  const Dropin = z.object({ name: str, contents: str.optional(), ...(v34 ? { contents_local: str.optional() } : {}) });
  const Unit = z.object({
    name: str,
    enabled: bool.optional(),
    mask: bool.optional(),
    contents: str.optional(),
    ...(v34 ? { contents_local: str.optional() } : {}),
    dropins: z.array(Dropin).optional(),
  });
  const User = z.object({
    name: str,
    password_hash: str.optional(),
    ssh_authorized_keys: z.array(str).optional(),
    ...(v34 ? { ssh_authorized_keys_local: z.array(str).optional() } : {}),
    uid: int.optional(),
    gecos: str.optional(),
    home_dir: str.optional(),
    no_create_home: bool.optional(),
    primary_group: str.optional(),
    groups: z.array(str).optional(),
    no_user_group: bool.optional(),
    no_log_init: bool.optional(),
    shell: str.optional(),
    should_exist: bool.optional(),
    system: bool.optional(),
  });
  const Group = z.object({ name: str, gid: int.optional(), password_hash: str.optional(), should_exist: bool.optional(), system: bool.optional() });
  return z.object({
    variant: str,
    version: str,
    ignition: z
      .object({
        config: z.object({ merge: z.array(Resource).optional(), replace: Resource.optional() }).optional(),
        timeouts: z.object({ http_response_headers: int.optional(), http_total: int.optional() }).optional(),
        security: z.object({ tls: z.object({ certificate_authorities: z.array(Resource).optional() }).optional() }).optional(),
        proxy: z.object({ http_proxy: str.optional(), https_proxy: str.optional(), no_proxy: z.array(str).optional() }).optional(),
      })
      .optional(),
    storage: z
      .object({
        files: z.array(File).optional(),
        directories: z.array(Directory).optional(),
        links: z.array(Link).optional(),
        trees: z.array(Tree).optional(),
        filesystems: z.array(Filesystem).optional(),
        // refused (REFUSED_SECTIONS), but known: not "unused"
        disks: z.array(z.unknown()).optional(),
        raid: z.array(z.unknown()).optional(),
        luks: z.array(z.unknown()).optional(),
      })
      .optional(),
    systemd: z.object({ units: z.array(Unit).optional() }).optional(),
    passwd: z.object({ users: z.array(User).optional(), groups: z.array(Group).optional() }).optional(),
    kernel_arguments: z.unknown().optional(),
    boot_device: z.unknown().optional(),
  });
}
export type ButaneConfig = z.infer<ReturnType<typeof butaneSchema>>;
export type ButaneResource = z.infer<typeof Resource>;

/** The zod schema under optional/default wrappers. */
function unwrap(s: z.ZodType): z.ZodType {
  let cur = s as z.ZodType & { def?: { type?: string; innerType?: z.ZodType } };
  while (cur.def && (cur.def.type === "optional" || cur.def.type === "default" || cur.def.type === "nullable")) cur = cur.def.innerType as typeof cur;
  return cur;
}

/** Paths of keys in `value` that the schema does not know, in document order. */
export function unusedKeys(schema: z.ZodType, value: unknown, path = "$"): string[] {
  const s = unwrap(schema) as z.ZodType & { def: { type: string; element?: z.ZodType; shape?: Record<string, z.ZodType> } };
  const out: string[] = [];
  if (s.def.type === "object" && value && typeof value === "object" && !Array.isArray(value)) {
    const shape = (s as unknown as z.ZodObject).shape as Record<string, z.ZodType>;
    for (const [k, v] of Object.entries(value)) {
      if (!(k in shape)) out.push(`${path}.${k}`);
      else out.push(...unusedKeys(shape[k]!, v, `${path}.${k}`));
    }
  } else if (s.def.type === "array" && Array.isArray(value)) {
    for (const [i, v] of value.entries()) out.push(...unusedKeys(s.def.element!, v, `${path}.${i}`));
  }
  return out;
}
