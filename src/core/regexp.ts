/**
 * Regular expressions written by users (the `regexp` operator of job constraints). They run on RE2
 * (re2js): matching takes time linear in the text, whatever the pattern, so a pattern such as
 * `^(a+)+$` cannot freeze the scheduler the way a backtracking engine (JavaScript's RegExp) would.
 * RE2 syntax has no look-around and no back-references; such patterns are rejected at validation.
 */
import { RE2JS } from 're2js';

/** The longest pattern accepted, in characters: a constraint names a value, it is not a program. */
export const MAX_REGEXP_LENGTH = 256;
/** The most instructions a compiled pattern may have (`a{1000}` has about 1,000). */
const MAX_PROGRAM_SIZE = 5_000;
/** Compiled patterns kept for reuse (the scheduler matches one pattern against every node). */
const CACHE_SIZE = 1_000;

const cache = new Map<string, RE2JS>();

/** Why `source` is not an acceptable pattern, or undefined when it is. */
export function regexpProblem(source: string): string | undefined {
  if (source.length > MAX_REGEXP_LENGTH)
    return `expected a regular expression of at most ${MAX_REGEXP_LENGTH} characters, got ${source.length}`;
  try {
    compile(source);
    return undefined;
  } catch (err) {
    return `expected a regular expression (RE2 syntax): ${(err as Error).message}`;
  }
}

/**
 * Whether `text` contains a match of `source` (as RegExp.prototype.test: unanchored, use `^…$` for a
 * whole value). False for a pattern that is not acceptable (validation rejects those first).
 */
export function regexpMatches(source: string, text: string): boolean {
  let re: RE2JS;
  try {
    re = compile(source);
  } catch {
    return false;
  }
  return re.test(text);
}

function compile(source: string): RE2JS {
  const hit = cache.get(source);
  if (hit !== undefined) return hit;
  if (source.length > MAX_REGEXP_LENGTH) throw new Error(`longer than ${MAX_REGEXP_LENGTH} characters`);
  const re = RE2JS.compile(source);
  if (re.programSize() > MAX_PROGRAM_SIZE)
    throw new Error(`the pattern is too large once compiled (repetition counts too high)`);
  if (cache.size >= CACHE_SIZE) cache.clear();
  cache.set(source, re);
  return re;
}
