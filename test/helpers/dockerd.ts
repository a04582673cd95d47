/**
 * A real Docker engine for tests: `dockerd` on a private socket, data root and
 * exec root under /tmp/acl-test-docker-<pid>/, no iptables, no bridge. The
 * vitest globalSetup (test/setup/dockerd.global.ts) starts one for the whole
 * run and provides its host to the tests; `testDockerHost()` returns it, or
 * starts one for this test file when the global setup is not registered.
 * A missing dockerd is a loud failure, never a skip.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

export interface TestDockerd {
  /** "unix:///tmp/acl-test-docker-PID/docker.sock" */
  host: string;
  socketPath: string;
  dir: string;
  pid: number;
  /** Resolves when the engine answers _ping; rejects with its log when it cannot start. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

export const DOCKER_HOST_ENV = "ACL_TEST_DOCKER_HOST";
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

function sbinPath(): string {
  const p = process.env.PATH ?? "/usr/bin:/bin";
  return [p, "/usr/local/sbin", "/usr/sbin", "/sbin"].join(":");
}

/** GET /_ping on a unix socket; resolves true on "OK". */
export function pingSocket(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/_ping", timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (c) => (body += String(c)));
      res.on("end", () => resolve(res.statusCode === 200 && body.trim() === "OK"));
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
  });
}

function logTail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").trim().split("\n").slice(-25).join("\n");
  } catch {
    return "(no log)";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove directories left by earlier runs whose vitest and dockerd are both gone (and nothing is mounted there). */
function removeStaleDirs(): void {
  const mounts = fs.readFileSync("/proc/mounts", "utf8");
  for (const name of fs.readdirSync("/tmp")) {
    const m = /^acl-test-docker-(\d+)(?:-\d+)?$/.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const dir = `/tmp/${name}`;
    let daemonPid = 0;
    try {
      daemonPid = Number(fs.readFileSync(path.join(dir, "dockerd.pid"), "utf8").trim());
    } catch {
      /* no pid file */
    }
    if (daemonPid && alive(daemonPid)) continue;
    if (mounts.includes(` ${dir}/`)) continue;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** setpriv (util-linux) makes dockerd get SIGTERM if this process dies without stopping it. */
function hasSetpriv(): boolean {
  return sbinPath()
    .split(":")
    .some((d) => fs.existsSync(path.join(d, "setpriv")));
}

/** Start a private dockerd; waits until it answers _ping unless `wait: false` (then await `ready`). */
export async function startDockerd(opts: { dir?: string; wait?: boolean } = {}): Promise<TestDockerd> {
  removeStaleDirs();
  const dir = opts.dir ?? `/tmp/acl-test-docker-${process.pid}`;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "data"), { recursive: true });
  fs.mkdirSync(path.join(dir, "exec"), { recursive: true });
  const socketPath = path.join(dir, "docker.sock");
  const configFile = path.join(dir, "daemon.json");
  fs.writeFileSync(configFile, "{}\n"); // ignore the machine's /etc/docker/daemon.json
  const logFile = path.join(dir, "dockerd.log");
  const log = fs.openSync(logFile, "a");
  const argv = [
    `--host=unix://${socketPath}`,
    `--data-root=${path.join(dir, "data")}`,
    `--exec-root=${path.join(dir, "exec")}`,
    `--pidfile=${path.join(dir, "dockerd.pid")}`,
    `--config-file=${configFile}`,
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
  ];
  let child: ChildProcess;
  let spawnError: Error | undefined;
  const [cmd, args] = hasSetpriv() ? ["setpriv", ["--pdeathsig", "TERM", "dockerd", ...argv]] : ["dockerd", argv];
  child = spawn(cmd as string, args as string[], { stdio: ["ignore", log, log], env: { ...process.env, PATH: sbinPath() } });
  fs.closeSync(log);
  child.on("error", (e) => (spawnError = e));
  let exited: number | null | undefined;
  child.on("exit", (code) => (exited = code));

  const waitReady = async () => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (spawnError) {
        throw new Error(
          `cannot start dockerd (${spawnError.message}): the Docker tests need a real engine; install it with: apt-get install docker.io`,
        );
      }
      if (exited !== undefined) {
        const hint = exited === 127 || /not found|No such file/.test(logTail(logFile)) ? " (install it with: apt-get install docker.io)" : "";
        throw new Error(`dockerd exited with code ${exited} during startup${hint}; its log:\n${logTail(logFile)}`);
      }
      if (fs.existsSync(socketPath) && (await pingSocket(socketPath))) break;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`dockerd did not answer _ping within ${START_TIMEOUT_MS / 1000}s; its log:\n${logTail(logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const ready = waitReady();
  if (opts.wait === false) ready.catch(() => undefined); // reported to whoever awaits it
  else await ready;

  const stop = async () => {
    if (exited !== undefined) return;
    const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await done;
    clearTimeout(timer);
    // Leave no mounts behind before removing the directory.
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  return { host: `unix://${socketPath}`, socketPath, dir, pid: child.pid!, ready, stop };
}

/**
 * The engine for a test file: the one the global setup provides (inject or
 * the ACL_TEST_DOCKER_HOST variable), else a private one started now and
 * stopped by the returned function.
 */
export async function testDockerHost(): Promise<{ host: string; release: () => Promise<void> }> {
  let provided: string | undefined;
  try {
    const vitest = await import("vitest");
    provided = (vitest.inject as (k: string) => string | undefined)("aclDockerHost");
  } catch {
    provided = undefined;
  }
  provided ??= process.env[DOCKER_HOST_ENV];
  if (provided) {
    // The global setup starts the engine in the background: wait for it here.
    const sock = provided.replace(/^unix:\/\//, "");
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await pingSocket(sock))) {
      if (Date.now() > deadline) {
        throw new Error(
          `the test Docker engine at ${provided} does not answer _ping; its log:\n${logTail(path.join(path.dirname(sock), "dockerd.log"))}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return { host: provided, release: async () => undefined };
  }
  const d = await startDockerd({ dir: `/tmp/acl-test-docker-${process.pid}-${Date.now() % 100000}` });
  return { host: d.host, release: d.stop };
}
