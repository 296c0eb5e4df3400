/** Request bodies: JSON, bounded in size. */
import type { IncomingMessage } from 'node:http';
import { InvalidError } from '../core/errors.ts';

/** The largest request body read (4 MiB): a job file is kilobytes. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** The deepest nesting of arrays and objects accepted in a body (a job file nests about 6 deep). */
export const MAX_BODY_DEPTH = 64;

/**
 * The request's JSON body; undefined when it is empty. InvalidError when it is larger than
 * `maxBytes` or not JSON.
 */
export async function readJson(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new InvalidError(`request body larger than ${maxBytes / 1024 / 1024} MiB`);
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
