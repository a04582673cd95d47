/**
 * How a value was written in a TOML file, which a TOML parser does not keep:
 * `mode = 0o644` and `mode = 420` both parse to the number 420. This scanner
 * walks the text once (skipping strings of all four kinds and comments) and
 * reports, in document order, every `KEY = value` assignment of one bare key
 * with the literal text of its value and where it is. Pure.
 */
export interface KeyLiteral {
  /** 1-based line and column of the value. */
  line: number;
  col: number;
  /** The value as written, up to the next whitespace, comma, brace, bracket or comment. */
  literal: string;
}

/** Every `key = value` in `text` whose last key segment is `key`, in document order. */
export function keyLiterals(text: string, key: string): KeyLiteral[] {
  const out: KeyLiteral[] = [];
  const keyRe = new RegExp(`(?:(?:[A-Za-z0-9_-]+|"[^"\\n]*"|'[^'\\n]*')\\s*\\.\\s*)*(?:${escape(key)}|"${escape(key)}"|'${escape(key)}')\\s*=\\s*`, "y");
  let i = 0;
  let line = 1;
  let lineStart = 0;
  // a key can start at the beginning of a line, or after `{` or `,` (inline tables)
  let keyCanStart = true;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      lineStart = i + 1;
      keyCanStart = true;
      i++;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++;
      continue;
    }
    if (c === "#") {
      while (i < n && text[i] !== "\n") i++;
      continue;
    }
    if (keyCanStart) {
      keyRe.lastIndex = i;
      const m = keyRe.exec(text);
      if (m) {
        const at = i + m[0].length;
        const lit = /^[^\s,}\]#]*/.exec(text.slice(at))![0];
        out.push({ line, col: at - lineStart + 1, literal: lit });
      }
    }
    keyCanStart = false;
    if (c === '"' || c === "'") {
      i = skipString(text, i);
      continue;
    }
    if (c === "{" || c === ",") keyCanStart = true;
    i++;
  }
  return out;
  function skipString(t: string, start: number): number {
    const q = t[start]!;
    const triple = t.startsWith(q.repeat(3), start);
    let j = start + (triple ? 3 : 1);
    while (j < t.length) {
      const ch = t[j]!;
      if (ch === "\n") {
        if (!triple) return j; // an unterminated one-line string: the parser reports it
        line++;
        lineStart = j + 1;
      }
      if (ch === "\\" && q === '"') {
        if (t[j + 1] === "\n") {
          line++;
          lineStart = j + 2;
        }
        j += 2;
        continue;
      }
      if (triple ? t.startsWith(q.repeat(3), j) : ch === q) {
        j += triple ? 3 : 1;
        // TOML allows up to two more quotes right before the closing three
        while (triple && t[j] === q) j++;
        return j;
      }
      j++;
    }
    return j;
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
