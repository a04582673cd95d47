/**
 * The only module that talks to a Docker engine (through dockerode): inspect,
 * save, load, import and remove images, and stream a never-started
 * container's export. Turning an image into a tree is the docker source's job
 * (src/stages/rootfs/sources/docker.ts). Engine and image problems become
 * UserErrors that name the socket or the image and say what to do.
 */
import * as fs from "node:fs";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import Docker from "dockerode";
import { AclError, UserError } from "../errors.js";

export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";
const PING_TIMEOUT_MS = 10_000;
/**
 * What `docker create` adds to a container that is not part of the image:
 * /.dockerenv, and empty placeholders for these files, which mask the image's
 * own (seen with Docker 20.10; the engine bind-mounts real ones at run time). The
 * mountpoint directories it adds (dev, dev/pts, dev/shm, proc, sys) and the
 * etc/mtab -> /proc/mounts symlink are kept: an OS tree wants them too.
 */
const CONTAINER_ONLY_PATHS = new Set([".dockerenv"]);
const CONTAINER_PLACEHOLDERS = new Set(["etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console"]);

/** Keep an exported entry unless the engine made it for the container. */
export function isImageContent(relPath: string, entry: { type: string; size: number }): boolean {
  if (CONTAINER_ONLY_PATHS.has(relPath)) return false;
  if (CONTAINER_PLACEHOLDERS.has(relPath) && entry.type === "file" && entry.size === 0) return false;
  return true;
}

export interface DockerEngine {
  readonly docker: Docker;
  /** Where the engine is, for messages: "unix:///path" or "tcp://host:port". */
  readonly where: string;
}

/** Options shared by the image operations. */
export interface DockerCallOptions {
  /** An engine from connectDocker (default: connect to hostOrSocket, DOCKER_HOST or the default socket). */
  engine?: DockerEngine;
  hostOrSocket?: string;
  /** Spec key and file the image came from, named in errors (e.g. "sources[1].image"). */
  key?: string;
  specFile?: string;
}

async function engineFor(opts: DockerCallOptions): Promise<DockerEngine> {
  return opts.engine ?? (await connectDocker(opts.hostOrSocket));
}

export interface DockerImageInfo {
  id: string;
  repoTags: string[];
  repoDigests: string[];
}


function describeHost(hostOrSocket: string | undefined): { opts: Docker.DockerOptions | undefined; where: string } {
  const spec = hostOrSocket ?? process.env.DOCKER_HOST;
  if (!spec) return { opts: { socketPath: DEFAULT_DOCKER_SOCKET }, where: `unix://${DEFAULT_DOCKER_SOCKET}` };
  if (spec.startsWith("unix://")) {
    const p = spec.slice("unix://".length) || DEFAULT_DOCKER_SOCKET;
    return { opts: { socketPath: p }, where: `unix://${p}` };
  }
  if (spec.startsWith("/")) return { opts: { socketPath: spec }, where: `unix://${spec}` };
  const m = /^(tcp|http|https):\/\/([^:/]+)(?::(\d+))?\/?$/.exec(spec);
  if (m) {
    if (hostOrSocket === undefined) return { opts: undefined, where: spec }; // docker-modem reads DOCKER_HOST and TLS vars
    const tls = m[1] === "https" || process.env.DOCKER_TLS_VERIFY === "1";
    return {
      opts: { host: m[2], port: Number(m[3] ?? (tls ? 2376 : 2375)), protocol: tls ? "https" : "http" },
      where: spec,
    };
  }
  throw new UserError(`unsupported Docker host '${spec}'`, {
    hint: "use unix:///path/to/docker.sock or tcp://host:port (DOCKER_HOST or the source's host key)",
  });
}

/** Connect to a Docker engine and check that it answers. */
export async function connectDocker(hostOrSocket?: string): Promise<DockerEngine> {
  const { opts, where } = describeHost(hostOrSocket);
  const docker = opts ? new Docker(opts) : new Docker();
  try {
    await (docker.ping as (o: { abortSignal: AbortSignal }) => Promise<unknown>)({
      abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS),
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code ?? e.message ?? String(err);
    throw new UserError(`cannot reach the Docker engine at ${where} (${why})`, {
      hint:
        e.code === "EACCES"
          ? `run as root or add your user to the docker group`
          : `start it (systemctl start docker, or dockerd --host ${where}) or point DOCKER_HOST at a running engine`,
    });
  }
  return { docker, where };
}

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

function engineError(engine: DockerEngine, what: string, err: unknown): AclError {
  if (err instanceof AclError) return err;
  const e = err as { statusCode?: number; json?: { message?: string }; message?: string };
  const msg = e.json?.message ?? e.message ?? String(err);
  return new UserError(`Docker engine at ${engine.where}: ${what} failed: ${msg.trim()}`, {
    hint: "check the engine's log (journalctl -u docker) and that the image is usable",
  });
}

export async function inspectImage(ref: string, opts: DockerCallOptions = {}): Promise<DockerImageInfo> {
  const engine = await engineFor(opts);
  try {
    const info = await engine.docker.getImage(ref).inspect();
    return { id: info.Id, repoTags: info.RepoTags ?? [], repoDigests: info.RepoDigests ?? [] };
  } catch (err) {
    if (isNotFound(err)) {
      throw new UserError(`${opts.key ? `${opts.key}: ` : ""}Docker image '${ref}' is not in the engine at ${engine.where}`, {
        file: opts.specFile,
        hint: `get it first: docker pull ${ref}, or docker load -i FILE.tar (docker import for a root tarball)`,
      });
    }
    throw engineError(engine, `inspecting image '${ref}'`, err);
  }
}

/**
 * Create a container from an image (never started), hand its `docker export`
 * stream to `fn`, and always remove the container afterwards.
 */
export async function withContainerExport<T>(
  imageId: string,
  fn: (stream: Readable, where: string) => Promise<T>,
  opts: DockerCallOptions = {},
): Promise<T> {
  const engine = await engineFor(opts);
  let container: Docker.Container;
  try {
    container = await engine.docker.createContainer({
      Image: imageId,
      // Never started: the command only has to satisfy images without CMD/ENTRYPOINT.
      Entrypoint: ["/acl-export-never-runs"],
      Cmd: [],
      Labels: { "org.acl.purpose": "export" },
      NetworkDisabled: true,
      HostConfig: { NetworkMode: "none" },
    });
  } catch (err) {
    throw engineError(engine, `creating a container from '${imageId}'`, err);
  }
  try {
    let stream: Readable;
    try {
      stream = (await container.export()) as unknown as Readable;
    } catch (err) {
      throw engineError(engine, `exporting the container of '${imageId}'`, err);
    }
    return await fn(stream, engine.where);
  } finally {
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** `docker save REF` into a file (the classic or OCI shape, whatever the engine writes). */
export async function saveImage(ref: string, destFile: string, opts: DockerCallOptions = {}): Promise<void> {
  const engine = await engineFor(opts);
  await inspectImage(ref, { ...opts, engine });
  try {
    const stream = (await engine.docker.getImage(ref).get()) as unknown as Readable;
    await pipeline(stream, fs.createWriteStream(destFile));
  } catch (err) {
    throw engineError(engine, `saving image '${ref}'`, err);
  }
}

/** `docker import` of a root tarball as repo:tag; returns the image ID. */
export async function importImage(
  tarFile: string,
  repoTag: string,
  opts: DockerCallOptions & { changes?: string[] } = {},
): Promise<string> {
  const engine = await engineFor(opts);
  const colon = repoTag.lastIndexOf(":");
  const [repo, tag] = colon > repoTag.lastIndexOf("/") ? [repoTag.slice(0, colon), repoTag.slice(colon + 1)] : [repoTag, "latest"];
  try {
    const stream = (await engine.docker.importImage(tarFile, {
      repo,
      tag,
      ...(opts.changes ? { changes: opts.changes } : {}),
    } as never)) as unknown as Readable;
    const events: { status?: string; error?: string }[] = await new Promise((resolve, reject) =>
      engine.docker.modem.followProgress(stream, (err: Error | null, out: unknown[]) =>
        err ? reject(err) : resolve(out as { status?: string; error?: string }[]),
      ),
    );
    const failed = events.find((e) => e.error);
    if (failed) throw new Error(failed.error);
  } catch (err) {
    throw engineError(engine, `importing '${tarFile}' as ${repoTag}`, err);
  }
  return (await inspectImage(repoTag, { engine })).id;
}

/** `docker load` of a docker-save / OCI archive; returns the engine's progress lines. */
export async function loadImage(tarFile: string, opts: DockerCallOptions = {}): Promise<string[]> {
  const engine = await engineFor(opts);
  try {
    const stream = (await engine.docker.loadImage(tarFile)) as unknown as Readable;
    const events: { stream?: string; error?: string }[] = await new Promise((resolve, reject) =>
      engine.docker.modem.followProgress(stream, (err: Error | null, out: unknown[]) =>
        err ? reject(err) : resolve(out as { stream?: string; error?: string }[]),
      ),
    );
    const failed = events.find((e) => e.error);
    if (failed) throw new Error(failed.error);
    return events.map((e) => (e.stream ?? "").trim()).filter(Boolean);
  } catch (err) {
    throw engineError(engine, `loading '${tarFile}'`, err);
  }
}

export async function removeImage(ref: string, opts: DockerCallOptions = {}): Promise<void> {
  const engine = await engineFor(opts);
  try {
    await engine.docker.getImage(ref).remove({ force: true });
  } catch (err) {
    if (!isNotFound(err)) throw engineError(engine, `removing image '${ref}'`, err);
  }
}
