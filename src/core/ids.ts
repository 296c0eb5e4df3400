import { randomBytes, randomUUID } from 'node:crypto';

/** A new object id (UUID v4). */
export function newId(): string {
  return randomUUID();
}

/** The short form shown in tables: the first 8 hex digits, as `git` shows commits. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** A short random suffix for generated names, e.g. quick one-off jobs `run-3f9a1c2e`. */
export function randomSuffix(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

const NAME = /^[a-z0-9]([a-z0-9_.-]{0,126}[a-z0-9])?$/;

/** Job, group, task, namespace and port names: lower case, digits, `-`, `_`, `.`; 1–128 characters. */
export function isValidName(name: string): boolean {
  return NAME.test(name);
}
