#!/usr/bin/env node
import { flush, run } from "@oclif/core";
import { handleTopLevelError } from "../dist/lib/cli-errors.js";

// `acl … | head`: a closed pipe ends the output quietly, not with an EPIPE error or a pending-await warning
process.stdout.on("error", (e) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

run(process.argv.slice(2), import.meta.url)
  .then(() => flush())
  .catch(handleTopLevelError);
