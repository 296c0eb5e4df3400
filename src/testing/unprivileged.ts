/**
 * Running this checkout as an unprivileged user (`nobody`) from a test that runs as root.
 *
 * A checkout under a private directory (mode 700: what `mktemp -d` makes, or anything under /root)
 * can not be traversed by another user, so that user can neither start the Node binary under
 * node_modules nor read the sources. `reachableCheckout()` copies what running unum needs — the Node
 * binary, `package.json`, `bin/`, `src/` and the production dependencies — into a fresh directory
 * that every user can traverse (mode 755), once per test process, and removes it when the process
 * exits. The copy is made whether it is needed or not, so that these tests run the same way in
 * every checkout.
 */
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** The `nobody` user and group of Debian (and most distributions). */
export const NOBODY = 65534;

/** The checkout these tests run from. */
export const CHECKOUT = resolve(import.meta.dirname, '..', '..');

export interface ReachableCheckout {
  /** The copy's root: `bin/unum.js`, `src/…` and `node_modules/` are under it. */
  root: string;
  /** The copy of the Node binary that runs the tests (process.execPath). */
  node: string;
}

let made: ReachableCheckout | undefined;

/**
 * A copy of the runnable parts of this checkout (and of the Node binary) that any user can reach.
 * Made on the first call in a process, shared by later calls, removed when the process exits.
 */
export function reachableCheckout(): ReachableCheckout {
  if (made !== undefined) return made;
  const root = mkdtempSync(join(tmpdir(), 'unum-checkout-'));
  process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  // mkdtemp makes it 700: open it up, and make sure of the modes of what is made below.
  chmodSync(root, 0o755);
  const previous = process.umask(0o022);
  try {
    const node = join(root, 'node', 'bin', 'node');
    mkdirSync(dirname(node), { recursive: true });
    linkOrCopy(process.execPath, node);
    copyFileSync(join(CHECKOUT, 'package.json'), join(root, 'package.json'));
    for (const dir of ['bin', 'src', ...productionDependencies()])
      cpSync(join(CHECKOUT, dir), join(root, dir), { recursive: true, dereference: true });
    made = { root, node };
    return made;
  } finally {
    process.umask(previous);
  }
}

/** The node_modules paths of the packages unum needs at run time (package-lock.json, dev excluded). */
function productionDependencies(): string[] {
  const lock = JSON.parse(readFileSync(join(CHECKOUT, 'package-lock.json'), 'utf8')) as {
    packages?: Record<string, { dev?: boolean }>;
  };
  return Object.entries(lock.packages ?? {})
    .filter(([path, entry]) => path.startsWith('node_modules/') && entry.dev !== true)
    .map(([path]) => path)
    .filter((path) => existsSync(join(CHECKOUT, path)));
}

/**
 * A hard link when both are on one file system and every user may already run the file (the binary
 * is large), else a copy that every user may run.
 */
function linkOrCopy(from: string, to: string): void {
  if ((statSync(from).mode & 0o005) === 0o005)
    try {
      linkSync(from, to);
      return;
    } catch {
      // another file system: copy
    }
  copyFileSync(from, to);
  chmodSync(to, 0o755);
}
