/**
 * Which CA the CLI trusts for an https:// server: the file `UNUM_CACERT` names, else the cluster CA
 * a server or a joined agent keeps in this machine's data dir (`$UNUM_DATA_DIR/ca.pem`, else the
 * default data dir's), if there is one. None: https:// servers are checked against the system's CAs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './context.ts';
import { dataDirFrom } from './daemon.ts';

export const CA_FILE = 'ca.pem';

export function cliCa(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const named = env['UNUM_CACERT'];
  const file = named || join(dataDirFrom(undefined, env), CA_FILE);
  try {
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      if (named) throw new UsageError(`UNUM_CACERT ${named} holds no PEM certificate`);
      return undefined;
    }
    return pem;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // A file the user named must be there; the default one only where a server or agent runs.
    if (named)
      throw new UsageError(
        `cannot read UNUM_CACERT ${named}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    return undefined;
  }
}
