/**
 * A task can not leave its sandbox's limits through the kernel's side doors: on a real `unum up`,
 * a task that runs `unshare -Urm` gets no user namespace (before the seccomp filter it became uid 0
 * with a mount namespace of its own), one that calls io_uring_setup gets EPERM, and `unshare -m`
 * still fails for lack of capabilities; a task allowed to run as root is held alike. Ordinary
 * tasks (a shell, Python with a thread and a child process) run as before. Each task prints what it
 * got; the test reads its log.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import { seccompArchOf } from '../../src/agent/drivers/exec/seccomp.ts';
import { upToken } from '../../src/testing/acl.ts';
import { freePort } from '../../src/testing/net.ts';
import { missingRoot, missingTools } from '../../src/testing/tools.ts';
import { startUp } from '../../src/testing/unum-up.ts';
import { waitFor } from '../../src/testing/wait.ts';

const skip =
  missingRoot('sandboxed tasks') ??
  missingTools(['bwrap', 'setpriv', 'unshare', 'python3']) ??
  (seccompArchOf() === undefined ? `no seccomp filter for ${process.arch}` : undefined) ??
  false;

/** Asks the kernel for an io_uring and says how it answered. */
const IO_URING = `
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 1, params)
print('IO_URING', 'fd' if fd >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)
`;

/** What an ordinary program does: a thread (clone3, then clone) and a child process. */
const ORDINARY_PYTHON = `
import subprocess, threading
out = []
t = threading.Thread(target=lambda: out.append('thread'))
t.start(); t.join()
child = subprocess.run(['sh', '-c', 'echo child'], capture_output=True, text=True).stdout.strip()
print('PYTHON', out[0], child, flush=True)
`;

/** Runs `unshare ARGS id -u`; prints its output and exit code. */
const unshare = (tag: string, args: string) => `out=$(unshare ${args} id -u 2>&1); echo "${tag} rc=$? $out"`;

const task = (name: string, command: string, args: string[], user?: string) => ({
  name,
  command,
  args,
  ...(user !== undefined ? { user } : {}),
  resources: { cpu: 50, memory: 64 },
});

describe('a task can not make user namespaces or use io_uring', { skip, timeout: 180_000 }, () => {
  const job = `sc-${randomBytes(3).toString('hex')}`;
  let dir: string;
  let up: ChildProcess | undefined;
  let client: UnumClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-hostile-seccomp-'));
    const port = await freePort();
    client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
    up = await startUp({ port, dataDir: dir, client, args: ['--allow-task-user', 'root'] });
  });
  after(async () => {
    if (up && up.exitCode === null && up.signalCode === null) {
      up.kill('SIGINT');
      await new Promise((r) => up!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** Each task's log (stdout and stderr) once the allocation is done. */
  async function logsOfJob(tasks: readonly string[]): Promise<Record<string, string>> {
    const alloc = await waitFor(
      async () => {
        const a = (await client.jobAllocations(job)).items[0];
        return a !== undefined && ['complete', 'failed'].includes(a.clientStatus) ? a : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200, description: 'the tasks to finish' },
    );
    const out: Record<string, string> = {};
    for (const name of tasks) {
      let text = '';
      for (const stream of ['stdout', 'stderr'] as const)
        for await (const chunk of client.allocLogs(alloc.id, { task: name, stream })) text += chunk;
      out[name] = text;
    }
    return out;
  }

  test('unshare -Urm and io_uring_setup are refused; shells and Python work', async () => {
    const node = (await client.listNodes()).items[0];
    assert.match(
      node?.drivers['exec']?.description ?? '',
      /seccomp filter/,
      'the node says it has the filter',
    );

    const tasks = [
      task('userns', '/bin/sh', ['-c', `${unshare('USERNS', '-Urm')}; ${unshare('MOUNTNS', '-m')}`]),
      task('rootns', '/bin/sh', ['-c', unshare('ROOTUSERNS', '-Urm')], 'root'),
      task('uring', 'python3', ['-c', IO_URING]),
      task('shell', '/bin/sh', ['-c', 'echo "SHELL $(id -u) $(echo ok | tr a-z A-Z)"']),
      task('python', 'python3', ['-c', ORDINARY_PYTHON]),
    ];
    await client.submitJob({ job, type: 'batch', groups: [{ name: 'g', tasks }] });
    const logs = await logsOfJob(tasks.map((t) => t.name));

    // No user namespace, so no uid 0 and no mount namespace: EPERM from unshare itself.
    const userns = /USERNS rc=(\d+) (.*)/.exec(logs['userns'] ?? '');
    assert.ok(userns, `the userns task's report: ${logs['userns']}`);
    assert.notEqual(userns[1], '0', `unshare -Urm succeeded: ${userns[2]}`);
    assert.match(userns[2] ?? '', /unshare failed: Operation not permitted/);
    assert.doesNotMatch(userns[2] ?? '', /^0$/m);
    // A plain mount namespace needs CAP_SYS_ADMIN, which the task never had.
    const mountns = /MOUNTNS rc=(\d+) (.*)/.exec(logs['userns'] ?? '');
    assert.notEqual(mountns?.[1], '0', `unshare -m succeeded: ${logs['userns']}`);
    assert.match(mountns?.[2] ?? '', /Operation not permitted/);

    const rootns = /ROOTUSERNS rc=(\d+) (.*)/.exec(logs['rootns'] ?? '');
    assert.ok(rootns, `the root task's report: ${logs['rootns']}`);
    assert.notEqual(rootns[1], '0', `unshare -Urm succeeded as root: ${rootns[2]}`);
    assert.match(rootns[2] ?? '', /unshare failed: Operation not permitted/);

    assert.match(logs['uring'] ?? '', /^IO_URING EPERM$/m, `io_uring_setup: ${logs['uring']}`);

    const shell = /SHELL (\d+) OK/.exec(logs['shell'] ?? '');
    assert.ok(shell, `the shell task: ${logs['shell']}`);
    assert.ok(Number(shell[1]) >= 200000, `the shell ran as its own uid (${shell[1]})`);
    assert.match(logs['python'] ?? '', /^PYTHON thread child$/m, `the Python task: ${logs['python']}`);

    // Each task got to its report and ended on its own (a refused call is an answer, not a crash).
    const alloc = (await client.jobAllocations(job)).items[0];
    for (const t of tasks) assert.equal(alloc?.taskStates[t.name]?.exitCode, 0, `${t.name}'s exit code`);
  });
});
