/**
 * Progress reporting. Results go to stdout (done by the command); everything
 * here goes to stderr: plain lines, a progress bar on a TTY, or JSON events
 * (one per line) when --json is set.
 */
export interface Reporter {
  /** Start a named stage; returns a function that ends it. */
  stage(name: string, detail?: string): StageHandle;
  info(message: string): void;
  warn(message: string): void;
}

export interface StageHandle {
  /** Report progress within the stage (done/total in any unit). */
  progress(done: number, total: number, unit?: string): void;
  /** End the stage; `cached` marks a reused stage. */
  end(opts?: { cached?: boolean; note?: string }): number;
}

export type ReporterMode = "plain" | "tty" | "json" | "silent";

export function createReporter(mode?: ReporterMode, stream: NodeJS.WritableStream = process.stderr): Reporter {
  const m: ReporterMode =
    mode ?? ((stream as NodeJS.WriteStream).isTTY && !process.env.CI ? "tty" : "plain");
  const write = (s: string) => {
    if (m !== "silent") stream.write(s);
  };
  const event = (obj: Record<string, unknown>) => write(JSON.stringify({ ts: Date.now(), ...obj }) + "\n");
  return {
    stage(name, detail) {
      const t0 = performance.now();
      let lastPct = -1;
      let lastPrint = 0;
      if (m === "json") event({ event: "stage-start", stage: name, detail });
      else write(`==> ${name}${detail ? ` (${detail})` : ""}\n`);
      return {
        progress(done, total, unit = "") {
          const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
          if (pct === lastPct) return;
          lastPct = pct;
          if (m === "tty") {
            const width = 30;
            const fill = Math.round((pct / 100) * width);
            write(`\r    [${"#".repeat(fill)}${".".repeat(width - fill)}] ${pct}% ${unit}`);
          } else if (m === "json") {
            event({ event: "stage-progress", stage: name, done, total, unit });
          } else {
            const now = performance.now();
            if (now - lastPrint > 2000 || pct === 100) {
              lastPrint = now;
              write(`    ${name}: ${pct}%\n`);
            }
          }
        },
        end(opts = {}) {
          const ms = performance.now() - t0;
          if (m === "tty" && lastPct >= 0) write("\r\x1b[K");
          if (m === "json") event({ event: "stage-end", stage: name, ms: Math.round(ms), cached: !!opts.cached, note: opts.note });
          else write(`    ${name}: ${opts.cached ? "cached, " : ""}${(ms / 1000).toFixed(2)} s${opts.note ? ` (${opts.note})` : ""}\n`);
          return ms;
        },
      };
    },
    info(message) {
      if (m === "json") event({ event: "info", message });
      else write(`    ${message}\n`);
    },
    warn(message) {
      if (m === "json") event({ event: "warning", message });
      else write(`warning: ${message}\n`);
    },
  };
}

export const silentReporter: Reporter = createReporter("silent");
