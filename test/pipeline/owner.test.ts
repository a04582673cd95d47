import { execa } from "execa";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ownedTempDir, ownerAlive, OWNER_FILE, parseProcStart, readOwner, removeAbandoned, thisOwner, UNOWNED_GRACE_MS } from "../../src/pipeline/owner.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("owned temporary folders", () => {
  it("reads the start time out of /proc/PID/stat, whatever the command name holds", () => {
    const fields = (comm: string) => `4242 (${comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615`;
    expect(parseProcStart(fields("node"))).toBe("987654");
    expect(parseProcStart(fields("a b) (c"))).toBe("987654");
    expect(parseProcStart("garbage")).toBeUndefined();
  });

  it("records this process, which is alive; a process that exited, or a reused PID, is not", async () => {
    const parent = await mkdtemp(join(tmpdir(), "acl-owner-"));
    dirs.push(parent);
    const dir = await ownedTempDir(parent, "work-");
    const me = (await readOwner(dir))!;
    expect(me).toEqual(await thisOwner());
    expect(me.pid).toBe(process.pid);
    expect(await ownerAlive(me)).toBe(true);
    const exited = execa("true");
    await exited;
    expect(await ownerAlive({ ...me, pid: exited.pid! })).toBe(false);
    // PID 1 runs, but it is not the process that started at our start time
    expect(await ownerAlive({ ...me, pid: 1 })).toBe(false);
    expect(await ownerAlive({ ...me, boot: "another-boot" })).toBe(false);
  });

  it("removes the folders whose owner is gone and old ones that name none, never a live one's", async () => {
    const parent = await mkdtemp(join(tmpdir(), "acl-owner-"));
    dirs.push(parent);
    const live = await ownedTempDir(parent, ".out.build-");
    const killed = join(parent, ".out.build-killed");
    await mkdir(killed);
    const dead = execa("true");
    await dead;
    await writeFile(join(killed, OWNER_FILE), JSON.stringify({ ...(await thisOwner()), pid: dead.pid }));
    await writeFile(join(killed, "half-written.img"), "x");
    const oldUnowned = join(parent, ".out.build-old");
    await mkdir(oldUnowned);
    const past = (Date.now() - UNOWNED_GRACE_MS - 60_000) / 1000;
    await utimes(oldUnowned, past, past);
    const newUnowned = join(parent, ".out.build-new");
    await mkdir(newUnowned);
    const other = join(parent, "unrelated");
    await mkdir(other);
    await utimes(other, past, past);

    const removed = await removeAbandoned(parent, (n) => n.startsWith(".out.build-"));
    expect(removed.map((r) => r.path).sort()).toEqual([killed, oldUnowned].sort());
    expect(removed.find((r) => r.path === killed)!.owner!.pid).toBe(dead.pid);
    expect((await readdir(parent)).sort()).toEqual([".out.build-new", live.slice(parent.length + 1), "unrelated"].sort());
    expect(JSON.parse(await readFile(join(live, OWNER_FILE), "utf8")).pid).toBe(process.pid);
  });
});
