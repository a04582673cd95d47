/**
 * vitest globalSetup: every temporary file of the run (the tests' mkdtemp
 * folders, the acl and QEMU processes they start) goes into one folder,
 * TMPDIR=/tmp/acl-test-tmp-PID, removed when the run ends. Many tests make
 * multi-GB scratch folders; left in /tmp they filled the disk after a few
 * runs. A folder whose run was killed (its PID gone) is removed by the next run.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PREFIX = "acl-test-tmp-";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

export default function setup(): () => void {
  const base = tmpdir();
  for (const name of readdirSync(base)) {
    const pid = Number(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : NaN);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !alive(pid)) rmSync(join(base, name), { recursive: true, force: true });
  }
  const dir = join(base, `${PREFIX}${process.pid}`);
  mkdirSync(dir, { recursive: true });
  // the test workers and every process they start inherit it (os.tmpdir() reads TMPDIR)
  process.env.TMPDIR = dir;
  return () => {
    rmSync(dir, { recursive: true, force: true });
  };
}
