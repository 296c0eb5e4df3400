/**
 * Cgroup names are path segments under the unum parent: they come from allocation ids and task
 * names, and must never reach outside it (`/`, `..`) nor collide with a control file.
 */
import { InvalidError } from '../../core/errors.ts';
import { isValidName } from '../../core/ids.ts';

/**
 * Letters, digits, `_`, `.`, `-`; starts with a letter or digit (so it is never `.` or `..`, and
 * never hidden); at most 200 characters. No `/`, so it is always one path segment. `a..b` is allowed:
 * inside a segment two dots are just characters, and task names may hold them.
 */
const CGROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
/** An allocation id: a UUID, or any id of letters, digits and `-` (no `.`, so the name splits back). */
const ALLOC_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export function isValidCgroupName(name: string): boolean {
  return CGROUP_NAME.test(name);
}

/** Throws InvalidError unless `name` is a safe single path segment (see isValidCgroupName). */
export function validateCgroupName(name: string): void {
  if (!isValidCgroupName(name))
    throw new InvalidError(
      `invalid cgroup name ${JSON.stringify(name)}: expected letters, digits, '_', '.' or '-', 1-200 characters, starting with a letter or digit`,
      { details: { fields: [{ path: 'name', message: 'not a safe cgroup name' }] } },
    );
}

/**
 * The cgroup name of one task of one allocation: `<allocId>.<task>`. Unique per node, and the first
 * `.` splits it back (alloc ids hold none). Throws InvalidError for an id or task name that could not
 * come from a validated job.
 */
export function taskCgroupName(allocId: string, task: string): string {
  if (!ALLOC_ID.test(allocId))
    throw new InvalidError(`invalid allocation id for a cgroup name: ${JSON.stringify(allocId)}`);
  if (!isValidName(task))
    throw new InvalidError(`invalid task name for a cgroup name: ${JSON.stringify(task)}`);
  const name = `${allocId}.${task}`;
  validateCgroupName(name);
  return name;
}
