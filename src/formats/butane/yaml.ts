/**
 * Butane YAML, read as butane reads it: YAML 1.1 scalars (a mode written
 * `0644` is the octal integer 420), one document, and the line and column of
 * every key and sequence item, so reports can say
 * `$.storage.files.0.path, line 5 col 7`. Pure: text in, value and positions out.
 */
import { EVENT_ID, getScalarValue, load, parseEvents, YAML11_SCHEMA, YAMLException, type Event } from "js-yaml";

export interface Position {
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  column: number;
}

export interface ButaneYaml {
  value: unknown;
  /** Where each path's value starts (a sequence item's start, a mapping entry's value), as butane reports errors. */
  positions: ReadonlyMap<string, Position>;
  /** Where each mapping entry's key is, as butane reports unused keys. */
  keyPositions: ReadonlyMap<string, Position>;
}

export class ButaneYamlError extends Error {
  constructor(
    message: string,
    readonly position?: Position,
  ) {
    super(message);
  }
}

/** `$`, `$.storage`, `$.storage.files.0`: butane's report paths. */
export function childPath(parent: string, key: string | number): string {
  return `${parent}.${key}`;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

export function positionAt(starts: readonly number[], offset: number): Position {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: offset - starts[lo]! + 1 };
}

type Frame = { kind: "map"; path: string; key?: string; expectKey: boolean } | { kind: "seq"; path: string; index: number };

export function parseButaneYaml(text: string): ButaneYaml {
  let events: Event[];
  let value: unknown;
  try {
    events = parseEvents(text, {});
    const docs = events.filter((e) => e.type === EVENT_ID.DOCUMENT).length;
    if (docs > 1) throw new ButaneYamlError("the config has more than one YAML document");
    value = load(text, { schema: YAML11_SCHEMA });
  } catch (e) {
    if (e instanceof ButaneYamlError) throw e;
    if (e instanceof YAMLException) {
      const mark = e.mark;
      throw new ButaneYamlError(`invalid YAML: ${e.reason}`, mark ? { line: mark.line + 1, column: mark.column + 1 } : undefined);
    }
    throw e;
  }
  const starts = lineStarts(text);
  const positions = new Map<string, Position>();
  const keyPositions = new Map<string, Position>();
  const stack: Frame[] = [];
  positions.set("$", { line: 1, column: 1 });
  /** The path of the node that starts now, and record where it starts. */
  const enter = (offset: number): string => {
    const top = stack.at(-1);
    if (!top) return "$";
    if (top.kind === "seq") {
      const p = childPath(top.path, top.index++);
      positions.set(p, positionAt(starts, offset));
      return p;
    }
    const p = childPath(top.path, top.key ?? "");
    top.expectKey = true;
    positions.set(p, positionAt(starts, offset));
    return p;
  };
  for (const e of events) {
    const top = stack.at(-1);
    if (e.type === EVENT_ID.SCALAR) {
      if (top?.kind === "map" && top.expectKey) {
        top.key = getScalarValue(text, e);
        top.expectKey = false;
        keyPositions.set(childPath(top.path, top.key), positionAt(starts, e.valueStart));
        continue;
      }
      enter(e.valueStart);
    } else if (e.type === EVENT_ID.MAPPING) {
      const p = enter(e.start);
      stack.push({ kind: "map", path: p, expectKey: true });
    } else if (e.type === EVENT_ID.SEQUENCE) {
      const p = enter(e.start);
      stack.push({ kind: "seq", path: p, index: 0 });
    } else if (e.type === EVENT_ID.ALIAS) {
      enter(e.anchorStart);
    } else if (e.type === EVENT_ID.POP) {
      stack.pop();
    }
  }
  return { value, positions, keyPositions };
}
