/**
 * Which token the CLI sends: `UNUM_TOKEN`, else the file `UNUM_TOKEN_FILE` names, else the
 * management token `unum up` keeps in its data dir (`$UNUM_DATA_DIR`, else the default), which only
 * the user who runs unum can read. None: requests go without one (and routes that need a
 * capability answer 401 saying so).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './context.ts';
import { dataDirFrom } from './daemon.ts';

export const MANAGEMENT_TOKEN_FILE = 'management-token';

export function cliToken(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const direct = env['UNUM_TOKEN']?.trim();
  if (direct) return direct;
  const named = env['UNUM_TOKEN_FILE'];
  const file = named ?? join(dataDirFrom(undefined, env), MANAGEMENT_TOKEN_FILE);
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (err) {
    // A file the user named must be there; the default one only where unum up runs.
    if (named !== undefined)
      throw new UsageError(
        `cannot read UNUM_TOKEN_FILE ${named}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    return undefined;
  }
}
