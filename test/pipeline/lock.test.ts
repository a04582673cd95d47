import { execa } from "execa";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireLock, removeAbandonedLocks, tryLock } from "../../src/pipeline/lock.js";
import { parseProcStart, thisOwner, type Owner } from "../../src/pipeline/owner.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "acl-lock-"));
  dirs.push(d);
  return d;
}

/** Another process as a lock's owner: a `sleep` that runs until killed, named the way acl names itself. */
async function otherProcess() {
  const child = execa("sleep", ["600"]);
  await new Promise((r) => setTimeout(r, 50));
  const start = parseProcStart(await readFile(`/proc/${child.pid}/stat`, "utf8"))!;
  const owner: Owner = { ...(await thisOwner()), pid: child.pid!, start };
  return {
    owner,
    async stop() {
      child.kill("SIGKILL");
      await child.catch(() => undefined);
    },
  };
}

describe("locks between builds", () => {
  it("one holder at a time: twenty waiters in turn, none inside together", async () => {
    const path = join(await scratch(), "locks", "entry.lock");
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const lock = await acquireLock(path, { pollMs: 5 });
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setTimeout(r, 3));
        order.push(i);
        inside--;
        await lock.release();
      }),
    );
    expect(most).toBe(1);
    expect(order.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // nothing is left: not the lock, not the files it was made in
    expect(await readdir(join(path, ".."))).toEqual([]);
  });

  it("waits for a live holder, saying who it is, and takes the lock once that process is gone", async () => {
    const dir = await scratch();
    const path = join(dir, "out.lock");
    const other = await otherProcess();
    await writeFile(path, JSON.stringify(other.owner));
    const held = await tryLock(path);
    expect(held).toEqual(other.owner);
    const told: number[] = [];
    const waiting = acquireLock(path, { pollMs: 20, repeatMs: 100, onWait: (h) => told.push(h.pid) });
    await new Promise((r) => setTimeout(r, 350));
    expect(told.length).toBeGreaterThanOrEqual(2); // said at once, and again while it went on
    expect(new Set(told)).toEqual(new Set([other.owner.pid]));
    await other.stop();
    const lock = await waiting;
    expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it("breaks the lock of a process that is gone, or one that does not read, at once", async () => {
    const dir = await scratch();
    const path = join(dir, "entry.lock");
    const other = await otherProcess();
    await other.stop();
    await writeFile(path, JSON.stringify(other.owner));
    const a = await tryLock(path);
    expect("release" in a).toBe(true);
    await (a as { release(): Promise<void> }).release();
    await writeFile(path, "{half");
    const b = await tryLock(path);
    expect("release" in b).toBe(true);
    await (b as { release(): Promise<void> }).release();
    expect(await readdir(dir)).toEqual([]);
  });

  it("releasing removes only the holder's own lock", async () => {
    const dir = await scratch();
    const path = join(dir, "entry.lock");
    const lock = await acquireLock(path);
    const other = await otherProcess();
    try {
      // as if the lock had been broken and another process had taken it
      await writeFile(path, JSON.stringify(other.owner));
      await lock.release();
      expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(other.owner.pid);
    } finally {
      await other.stop();
    }
  });

  it("the sweep removes dead holders' locks and leftovers, and keeps a live one's", async () => {
    const dir = await scratch();
    const live = await otherProcess();
    const dead = await otherProcess();
    await dead.stop();
    try {
      await writeFile(join(dir, "live.lock"), JSON.stringify(live.owner));
      await writeFile(join(dir, "dead.lock"), JSON.stringify(dead.owner));
      await writeFile(join(dir, `dead.lock.${dead.owner.pid}-abc123`), "{}");
      await writeFile(join(dir, `x.lock.broken-${dead.owner.pid}-def456`), "{}");
      await writeFile(join(dir, `y.lock.${live.owner.pid}-0aa`), "{}");
      const removed = await removeAbandonedLocks(dir);
      expect(removed.map((p) => p.slice(dir.length + 1)).sort()).toEqual(["dead.lock", `dead.lock.${dead.owner.pid}-abc123`, `x.lock.broken-${dead.owner.pid}-def456`].sort());
      expect((await readdir(dir)).sort()).toEqual(["live.lock", `y.lock.${live.owner.pid}-0aa`].sort());
    } finally {
      await live.stop();
    }
  });
});
