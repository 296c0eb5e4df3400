/** The node's accounts (/etc/passwd), as every driver that names a user needs them. */
import { readFileSync } from 'node:fs';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

/** One line of /etc/passwd (or of `getent passwd`); undefined for a line that is not an entry. */
export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const [name, , uid, gid] = line.split(':');
  if (name === undefined || uid === undefined || gid === undefined) return undefined;
  const u = Number(uid);
  const g = Number(gid);
  return Number.isInteger(u) && Number.isInteger(g) ? { name, uid: u, gid: g } : undefined;
}

/** The accounts of /etc/passwd (none when it can not be read). */
export function passwdEntries(): PasswdEntry[] {
  try {
    return readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map(parsePasswdLine)
      .filter((e) => e !== undefined);
  } catch {
    return [];
  }
}

/** The name of the user this process runs as (for messages and the non-root path). */
export function currentUserName(): string {
  const uid = process.getuid?.() ?? -1;
  return passwdEntries().find((e) => e.uid === uid)?.name ?? `uid ${uid}`;
}
