/**
 * The build, as data: the stages in the order they run. Each is a folder of
 * its own (src/stages/NAME/), named as the build prints it and as the cache
 * names its entries.
 */
import type { AnyStage } from "../pipeline/runner.js";
import { bootStage } from "./boot/stage.js";
import { diskStage } from "./disk/stage.js";
import { initramfsStage } from "./initramfs/stage.js";
import { packagesStage } from "./packages/stage.js";
import { releaseStage } from "./release/stage.js";
import { rootfsStage } from "./rootfs/stage.js";
import { usrStage } from "./usr/stage.js";

export const BUILD_STAGES: readonly AnyStage[] = [packagesStage, rootfsStage, initramfsStage, usrStage, bootStage, diskStage, releaseStage];
