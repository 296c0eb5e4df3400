/** Request bodies: JSON, bounded in size. */
import type { IncomingMessage } from 'node:http';
import { InvalidError, UnavailableError } from '../core/errors.ts';

/** The largest request body read (4 MiB): a job file is kilobytes. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** The deepest nesting of arrays and objects accepted in a body (a job file nests about 6 deep). */
export const MAX_BODY_DEPTH = 64;

/** The bytes of all the bodies being read at once in this process (64 MiB): sixteen of the largest. */
export const MAX_BODIES_BYTES = 64 * 1024 * 1024;

/**
 * The bytes held by bodies being read, against a limit shared by every listener of the process:
 * many large bodies sent at once (400 × 4 MiB) would otherwise hold gigabytes.
 */
export class BodyBudget {
  readonly limit: number;
  private held = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Takes `bytes`; false (and nothing taken) when that would pass the limit. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.limit) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  get used(): number {
    return this.held;
  }
}

const processBudget = new BodyBudget(MAX_BODIES_BYTES);

/**
 * The request's JSON body; undefined when it is empty. InvalidError when it is larger than
 * `maxBytes` or not JSON; UnavailableError (503) when the bodies being read at once would pass
 * `budget` (retry later).
 */
export async function readJson(
  req: IncomingMessage,
  maxBytes = MAX_BODY_BYTES,
  budget: BodyBudget = processBudget,
): Promise<unknown> {
  let size = 0;
  try {
    return await readWithin(req, maxBytes, (bytes) => {
      if (!budget.take(bytes))
        throw new UnavailableError('the server is reading too many request bodies at once; retry later');
      size += bytes;
    });
  } finally {
    budget.give(size);
  }
}

async function readWithin(
  req: IncomingMessage,
  maxBytes: number,
  take: (bytes: number) => void,
): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new InvalidError(`request body larger than ${maxBytes / 1024 / 1024} MiB`);
    take((chunk as Buffer).length);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  // Checked before parsing: code that walks a value recursively (validation, JSON.stringify) would
  // overflow its stack on a body nested thousands deep.
  if (nestingDepth(text, MAX_BODY_DEPTH) > MAX_BODY_DEPTH)
    throw new InvalidError(`request body nested more than ${MAX_BODY_DEPTH} deep`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidError(`request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The deepest nesting of `[` and `{` in JSON text (outside strings), counted up to `stop + 1`: one
 * pass, whatever the text, valid JSON or not.
 */
export function nestingDepth(text: string, stop: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > stop) return deepest;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}
