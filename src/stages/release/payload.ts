/**
 * The update payload (the manifest's `update-payload` artifact): the header
 * (formats/update-payload.ts: name, version, microarch, root hash, size and
 * sha256 of the slot data) followed by the USR slot content.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type { ImageSpec } from "../../config/spec.js";
import { encodeUpdateHeader } from "../../formats/update-payload.js";
import type { UsrMeta } from "../usr/stage.js";

/** File name of an image's payload. */
export function payloadName(spec: Pick<ImageSpec, "name" | "version">): string {
  return `${spec.name}-${spec.version}.update`;
}

/** Write the payload for the /usr image `usrImage` (size `usrBytes`) to `dest`. */
export async function writeUpdatePayload(dest: string, spec: Readonly<ImageSpec>, usr: UsrMeta, usrImage: string, usrBytes: number): Promise<void> {
  const header = encodeUpdateHeader({
    name: spec.name,
    version: spec.version,
    microarch: spec.microarch,
    filesystem: spec.usr.filesystem,
    size: usrBytes,
    sha256: usr.imageSha256,
    verity: usr.verity,
  });
  await writeFile(dest, header);
  await pipeline(createReadStream(usrImage), createWriteStream(dest, { flags: "a" }));
}
