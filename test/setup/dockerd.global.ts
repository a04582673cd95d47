/**
 * vitest globalSetup: one private Docker engine for the whole test run.
 * Register in vitest.config.ts: `globalSetup: ["test/setup/dockerd.global.ts"]`.
 * Tests get its host with `inject("aclDockerHost")` (see test/helpers/dockerd.ts
 * testDockerHost()) or from the ACL_TEST_DOCKER_HOST environment variable.
 */
import type { TestProject } from "vitest/node";
import { DOCKER_HOST_ENV, startDockerd, type TestDockerd } from "../helpers/dockerd.js";

declare module "vitest" {
  export interface ProvidedContext {
    aclDockerHost: string;
  }
}

let engine: TestDockerd | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Started in the background: runs that need no engine do not wait for it;
  // testDockerHost() waits until it answers (or shows its log if it failed).
  engine = await startDockerd({ wait: false });
  project.provide("aclDockerHost", engine.host);
  process.env[DOCKER_HOST_ENV] = engine.host;
  return async () => {
    await engine?.stop();
    engine = undefined;
  };
}
