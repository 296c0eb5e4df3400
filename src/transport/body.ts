/** Request bodies: JSON, bounded in size. */
import type { IncomingMessage } from 'node:http';
import { InvalidError } from '../core/errors.ts';

/** The largest request body read (4 MiB): a job file is kilobytes. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

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
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidError(`request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
