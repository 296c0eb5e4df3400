/** `unum operator snapshot save|restore`: backups of the cluster's state, and moving it to another Store. */
import { constants, createReadStream } from 'node:fs';
import { access, chmod, open, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { InvalidError } from '../../core/errors.ts';
import { UsageError, positionals, stringFlag, type Command } from '../context.ts';
import { dataDirFrom } from '../daemon.ts';
import { json } from '../output.ts';
import { Progress } from '../progress.ts';

const USAGE = `Usage: unum operator snapshot save FILE
       unum operator snapshot restore FILE [--store URL | --data-dir DIR]

A snapshot is every key of the cluster's state at one revision, as JSON lines: the backup of a
cluster on either backend, and the way to move one from sqlite to etcd.

  snapshot save FILE       asks the server (UNUM_ADDR) for a snapshot and writes it to FILE
                           (mode 0600: it holds the cluster CA's key and every credential's
                           hash). Needs a management token.
  snapshot restore FILE    writes a snapshot into a Store that holds no state yet, with no server
                           running on it; then start "unum server" on that Store.
    --store URL            the Store to restore into: sqlite:PATH or etcd://HOST:2379,…
                           (default: sqlite:DATA_DIR/server/state.db)
    --data-dir DIR         the data dir of that default (default: $UNUM_DATA_DIR, else
                           \${XDG_DATA_HOME:-~/.local/share}/unum)

Keys on a lease (a server's place in the election, a node's liveness) are left out: their owners
make them again. The restored Store counts revisions afresh; allocations, jobs, tokens, policies
and the CA are as they were. A file cut short or changed is refused and nothing is written.

Examples:
  unum operator snapshot save /backup/unum-$(date +%F).jsonl
  unum operator snapshot restore /backup/unum-2026-12-01.jsonl --store etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
`;

export const operatorCommand: Command = {
  name: 'operator',
  summary: 'Operate the cluster: snapshots of its state (backup, restore, moving to etcd)',
  usage: USAGE,
  flags: { store: { type: 'string' }, 'data-dir': { type: 'string' } },
  async run(args, ctx) {
    const [topic, action] = args.positionals;
    if (topic !== 'snapshot' || (action !== 'save' && action !== 'restore'))
      throw new UsageError(
        'expected "unum operator snapshot save FILE" or "unum operator snapshot restore FILE"',
      );
    const [, , file] = positionals(args, 3, 3, 'FILE');
    const path = resolve(file!);
    const progress = new Progress(ctx.stderr, !ctx.json);

    if (action === 'save') {
      const tmp = `${path}.partial`;
      const fh = await open(tmp, 'w', 0o600).catch((err: NodeJS.ErrnoException) => {
        throw new InvalidError(`cannot write the snapshot to ${path}: ${err.code ?? err.message}`);
      });
      let lines = 0;
      let tail = '';
      try {
        await chmod(tmp, 0o600);
        for await (const chunk of ctx.client().snapshot(ctx.interrupted())) {
          await fh.write(chunk);
          lines += chunk.split('\n').length - 1;
          tail = (tail + chunk).slice(-200);
          progress.update(`saving: ${Math.floor(lines / 1000) * 1000}+ keys`);
        }
        await fh.sync();
      } catch (err) {
        await fh.close();
        await rm(tmp, { force: true });
        throw err;
      }
      await fh.close();
      const last = tail.trimEnd().split('\n').at(-1) ?? '';
      const trailer = (() => {
        try {
          return JSON.parse(last) as { end?: boolean; keys?: number };
        } catch {
          return {};
        }
      })();
      if (trailer.end !== true) {
        await rm(tmp, { force: true });
        throw new InvalidError(
          'the server stopped sending before the end of the snapshot; nothing was saved: try again',
        );
      }
      await rename(tmp, path);
      progress.done();
      ctx.stdout.write(
        ctx.json
          ? json({ file: path, keys: trailer.keys })
          : `saved ${trailer.keys} keys to ${path} (mode 0600: it holds the cluster's secrets)\n`,
      );
      return 0;
    }

    const url =
      stringFlag(args, 'store') ??
      `sqlite:${join(dataDirFrom(stringFlag(args, 'data-dir'), ctx.env), 'server', 'state.db')}`;
    // Offline, on the Store itself: through the server's package, as the daemons are started.
    const { restoreSnapshotInto } = await import('../../server/index.ts');
    await access(path, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
      throw new InvalidError(`cannot read the snapshot ${path}: ${err.code ?? err.message}`);
    });
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
    const r = await restoreSnapshotInto(url, lines, (n) => progress.update(`restoring: ${n} keys written`));
    progress.done();
    ctx.stdout.write(
      ctx.json
        ? json({ store: url, keys: r.keys, revision: r.header.revision, backend: r.header.backend })
        : `restored ${r.keys} keys (revision ${r.header.revision} of a ${r.header.backend} store, saved ${new Date(r.header.createdAt).toISOString()}) into ${url}\nstart the servers on it: unum server --store ${url}\n`,
    );
    return 0;
  },
};
