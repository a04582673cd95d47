/** Snapshot a directory tree (sorted, no symlink following) for comparisons in source tests. */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export interface Node {
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  mtime?: number;
  nlink?: number;
  ino?: number;
}

export function snapshot(root: string, opts: { mtimes?: boolean } = {}): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs);
    const n: Node = {
      type: st.isDirectory()
        ? "dir"
        : st.isSymbolicLink()
          ? "symlink"
          : st.isFIFO()
            ? "fifo"
            : st.isCharacterDevice()
              ? "char"
              : st.isBlockDevice()
                ? "block"
                : st.isSocket()
                  ? "socket"
                  : "file",
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
    };
    if (n.type === "file") {
      n.size = st.size;
      n.sha256 = createHash("sha256").update(fs.readFileSync(abs)).digest("hex");
      n.nlink = st.nlink;
      n.ino = st.ino;
    }
    if (n.type === "symlink") {
      n.target = fs.readlinkSync(abs);
      n.mode = 0;
    }
    if (opts.mtimes && n.type !== "dir") n.mtime = Math.floor(st.mtimeMs / 1000);
    out.set(rel || ".", n);
    if (n.type === "dir") for (const name of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk("");
  return out;
}

/** Comparable view without inode numbers (which differ between trees). */
export function comparable(snap: Map<string, Node>, skip: (p: string) => boolean = () => false): Record<string, Omit<Node, "ino">> {
  const o: Record<string, Omit<Node, "ino">> = {};
  for (const [p, n] of snap) {
    if (skip(p)) continue;
    const { ino: _ino, ...rest } = n;
    o[p] = rest;
  }
  return o;
}

/** All xattrs under root as { "rel/path": { name: hex } }, read by the real getfattr. */
export function xattrs(root: string): Record<string, Record<string, string>> {
  const outText = execFileSync("getfattr", ["-R", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", root], {
    encoding: "utf8",
  });
  const out: Record<string, Record<string, string>> = {};
  let cur = "";
  for (const line of outText.split("\n")) {
    const f = /^# file: (.*)$/.exec(line);
    if (f) {
      cur = path.relative(root, f[1]) || ".";
      continue;
    }
    const kv = /^([^=]+)=0x([0-9a-f]*)$/.exec(line);
    if (kv && cur) (out[cur] ??= {})[kv[1]] = kv[2];
  }
  return out;
}
