/** ACLs in tests: a server is deny-by-default, so a test bootstraps it and acts with the management token. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnumClient } from '../api/client.ts';
import { waitFor } from './wait.ts';

/**
 * Waits for the server to lead, bootstraps its ACLs and returns the management token and a client
 * using it. `ca`: the cluster CA of a TLS server.
 */
export async function bootstrapped(
  addr: string,
  ca?: string,
): Promise<{ token: string; client: UnumClient }> {
  const tls = ca !== undefined ? { ca } : {};
  const anonymous = new UnumClient({ addr, token: () => undefined, ...tls });
  const { secret } = await waitFor(() => anonymous.aclBootstrap(), { description: 'the ACL bootstrap' });
  anonymous.close();
  const client = new UnumClient({ addr, token: secret, ...tls });
  await waitFor(async () => (await client.status()).leader, { description: 'the server to lead' });
  return { token: secret, client };
}

/** The management token a `unum up --data-dir DIR` keeps (read at each call: it appears once up has started). */
export function upToken(dataDir: string): () => string | undefined {
  return () => {
    try {
      return readFileSync(join(dataDir, 'management-token'), 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
}
