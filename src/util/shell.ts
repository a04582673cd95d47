/**
 * POSIX shell quoting: one word as a shell reads it back, and a whole argv
 * as a command a person can paste. Plain words stay unquoted.
 */
const PLAIN = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One value as a single shell word (single quotes unless it is plain). */
export function shellWord(v: string | number): string {
  const s = String(v);
  return PLAIN.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An argv as a copy-pasteable command line. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map(shellWord).join(" ");
}
