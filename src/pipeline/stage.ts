/**
 * The stage contract. A build is a list of stages (src/stages/NAME/stage.ts);
 * each declares its name (as the build prints it and the cache names its
 * entries), the host tools and files it needs (with the Debian package of
 * each, checked for the whole build before the first stage runs), its cache
 * inputs when it is cached, and `run`. The build context carries everything a
 * stage may depend on besides the results of earlier stages: nothing is read
 * from or written to process.env.
 */
import type { ImageSpec } from "../config/spec.js";
import type { Requirement } from "../adapters/exec.js";
import type { Reporter, StageHandle } from "../output/reporter.js";
import type { StageCache } from "./cache.js";
import type { X509Certificate } from "node:crypto";

/** A Secure Boot key and its certificate, checked to belong together. */
export interface SigningPair {
  /** The private key, decrypted, as PKCS#8 PEM: memory only, piped to the signing tools. */
  keyPem: Buffer;
  certPath: string;
  cert: X509Certificate;
}

/** The db signing pair, and the KEK pair that signs the db update (.auth) when given. */
export interface SecureBootKeys extends SigningPair {
  kek?: SigningPair;
}

export interface BuildContext {
  readonly spec: Readonly<ImageSpec>;
  /** SOURCE_DATE_EPOCH of this build: every time stamp it writes. */
  readonly epoch: number;
  readonly cache: StageCache;
  /** This build's scratch folder (removed when the build ends); a stage that is not cached runs in WORK/NAME. */
  readonly workDir: string;
  /** The folder published as the output (by rename) when every stage succeeded. */
  readonly stagingDir: string;
  readonly reporter: Reporter;
  /** Debian package versions of the host tools (read once, before the first stage). */
  readonly hostTools: Readonly<Record<string, string>>;
  readonly aclVersion: string;
  /** Digest of acl's compiled code and the data files it renders: part of every stage id. */
  readonly codeDigest: string;
  /** Private key the build signs with, when it signs (checked before the first stage). */
  readonly signKey?: string;
  /** Secure Boot pair the boot chain is signed with (the private key in memory only), when it is. */
  readonly secureBoot?: SecureBootKeys;
}

/** What a stage's `run` works in. */
export interface StageIO {
  /**
   * Where the stage writes its output: a scratch folder that becomes the
   * cache entry (cached stages), or WORK/NAME (the others).
   */
  readonly dir: string;
  readonly progress: StageHandle;
}

/** A finished stage: its folder and its value (for a cached stage, the entry's metadata). */
export interface StageResult<T> {
  readonly name: string;
  readonly dir: string;
  readonly value: T;
  readonly cached: boolean;
  /** Cache id (cached stages only). */
  readonly id?: string;
}

export interface Stage<Out, In = object> {
  /** As the build prints it and the cache names its entries (CACHE/stages/NAME-ID). */
  readonly name: string;
  /** Host tools and files the stage runs, with their Debian packages; may depend on the spec. */
  requires(spec: Readonly<ImageSpec>): readonly Requirement[];
  /** Shown next to the name when the stage starts. */
  detail?(ctx: BuildContext, input: In): string | undefined;
  /**
   * Present on cached stages: everything besides acl's code and the versions
   * of the required packages that can change the output. The stage id is
   * the sha256 of the name and all of these; `run` then fills a scratch
   * folder that is committed under that id, and its value (JSON) is kept with
   * the entry.
   */
  cacheInputs?(ctx: BuildContext, input: In): Promise<unknown>;
  /**
   * What this stage and those after it will write into the build's work
   * folder (the output's file system), in bytes on disk: sparse files by the
   * blocks they will hold. When given, the build checks the free space there
   * before the stage runs, and a full file system later says how much more
   * was needed.
   */
  space?(ctx: BuildContext, input: In): Promise<number>;
  run(ctx: BuildContext, input: In, io: StageIO): Promise<Out>;
  /** One line for the end of the stage. */
  note?(value: Out): string | undefined;
}
