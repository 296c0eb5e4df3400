/**
 * What a task run by the isolating exec driver can and can not do, checked from inside real
 * sandboxes (bubblewrap, setpriv, cgroups: needs root; skipped with the reason elsewhere).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, afterEach, before, describe, test } from 'node:test';
import { newId } from '../../../core/ids.ts';
import { silentLogger } from '../../../core/log.ts';
import { waitFor } from '../../../testing/wait.ts';
import { taskCgroupName } from '../../cgroups/index.ts';
import { isAlive } from '../../fixtures.ts';
import { sandboxDevReady } from './sandbox-dev.ts';
import { DEFAULT_TASK_UID_RANGE } from './users.ts';
import {
  dataDir,
  nodeIsolation,
  sandboxUnavailable,
  stderrOf,
  stdoutOf,
  taskConfig,
  type DataDir,
  type TaskOptions,
} from '../driver-fixtures.ts';
import { requireTool } from '../../../testing/tools.ts';
import { drivers } from '../index.ts';
import { ROOT_TASK_CAPABILITIES, bwrapArgs, dropArgs, isWithin, sanitizeHostname } from './sandbox.ts';
import { fromCode, parseBwrapStatus } from '../exit-status.ts';
import {
  ExecError,
  describeExit,
  type Driver,
  type ExitResult,
  type TaskConfig,
  type TaskHandle,
} from '../types.ts';

void describe('the exec driver sandbox', async () => {
  const skip = await sandboxUnavailable();
  let data: DataDir;
  let exec: Driver;
  /** The same, on a node whose operator allows tasks to run as root. */
  let asRoot: Driver;
  const handles: TaskHandle[] = [];

  before(async () => {
    data = await dataDir();
    const cap = await nodeIsolation();
    const made = (allowedTaskUsers: string[]): Driver =>
      drivers.exec({
        logger: silentLogger(),
        enabled: true,
        dataDir: data.path,
        isolation: cap,
        allowedTaskUsers,
      });
    exec = made(['nobody']);
    asRoot = made(['root']);
  });
  afterEach(async () => {
    await Promise.all(handles.splice(0).map((h) => h.stop('SIGKILL', 0)));
  });
  after(async () => {
    await data.cleanup();
  });

  async function start(cfg: TaskConfig): Promise<TaskHandle> {
    const h = await exec.start(cfg);
    handles.push(h);
    return h;
  }

  /** Runs a shell script in a sandbox to its end: its result and output. */
  async function run(
    script: string,
    opts: TaskOptions = {},
  ): Promise<{ result: ExitResult; out: string; err: string; cfg: TaskConfig }> {
    const cfg = await taskConfig(data, 'sh', ['-c', script], opts);
    const result = await (await start(cfg)).wait();
    return { result, out: await stdoutOf(cfg), err: await stderrOf(cfg), cfg };
  }

  void test('a task sees only its own processes', { skip }, async () => {
    requireTool('ps');
    const { result, out } = await run(
      'ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "; echo; ps -e -o pid= | wc -l',
    );
    assert.deepEqual(result, { exitCode: 0 });
    const [procs = '', psCount = ''] = out.trim().split('\n');
    const pids = procs.trim().split(' ').map(Number);
    // init (1), the shell (2), ls and grep and the like: a handful, and none of the host's.
    assert.ok(pids.length <= 6, `pids seen: ${procs}`);
    assert.ok(pids.includes(1) && pids.includes(2));
    assert.ok(!pids.includes(process.pid) || process.pid <= 6, 'the agent is not visible');
    assert.ok(Number(psCount) <= 6, `ps saw ${psCount} processes`);
  });

  void test('a task can write only its own directories; /tmp is private', { skip }, async () => {
    const other = await taskConfig(data, 'true', []);
    await writeFile(join(other.cwd, 'local', 'secret'), 'theirs');
    const marker = `unum-private-${newId()}`;
    const script = [
      `try() { if ( eval "$2" ) 2>/dev/null; then echo "$1=ok"; else echo "$1=denied"; fi; }`,
      'try etc "echo x > /etc/unum-test"',
      'try usr "echo x > /usr/unum-test"',
      `try other-read "cat ${join(other.cwd, 'local', 'secret')}"`,
      `try other-write "echo x > ${join(other.cwd, 'local', 'mine')}"`,
      `try other-alloc "echo x > ${join(other.cwd, '..', 'alloc', 'mine')}"`,
      `try datadir "echo x > ${join(data.path, 'agent', 'evil')}"`,
      `try datadir-list "ls ${data.allocs} >/dev/null"`,
      'try logs "echo x > logs/forged"',
      'try local "echo x > local/file"',
      'try alloc "echo x > ../alloc/file"',
      'try home "echo x > ./file-in-home"',
      `try tmp "echo x > /tmp/${marker}"`,
      'try shm "echo x > /dev/shm/file"',
      'try sys "echo x > /sys/file"',
      'try sys-mkdir "mkdir /sys/dir"',
    ].join('\n');
    const { result, out } = await run(script);
    assert.deepEqual(result, { exitCode: 0 });
    const seen = keyValues(out);
    assert.deepEqual(seen, {
      etc: 'denied',
      usr: 'denied',
      'other-read': 'denied',
      'other-write': 'denied',
      'other-alloc': 'denied',
      datadir: 'denied',
      'datadir-list': 'denied',
      logs: 'denied',
      local: 'ok',
      alloc: 'ok',
      home: 'ok',
      tmp: 'ok',
      shm: 'ok',
      sys: 'denied',
      'sys-mkdir': 'denied',
    });
    assert.equal(existsSync(join(tmpdir(), marker)), false, "the task's /tmp is not the host's");
    assert.equal(existsSync('/etc/unum-test'), false);
  });

  void test(
    'a task runs as a uid of its own: one per allocation, shared by its tasks',
    { skip },
    async () => {
      const allocId = newId();
      // The alloc runner has the uid leased with the allocation's directories, before any start.
      await exec.prepareAllocation?.(allocId, data.allocs);
      const leased = await readFile(join(data.path, 'agent', 'task-uids', 'by-alloc', allocId), 'utf8');
      const a = await run(
        'id -u; id -g; id -G; grep -E "^(CapPrm|CapEff|CapAmb|NoNewPrivs):" /proc/self/status',
        {
          allocId,
          task: 'a',
        },
      );
      const b = await run('id -u', { allocId, task: 'b' });
      const other = await run('id -u');
      const [uid = '', gid = '', groups = '', ...status] = a.out.trim().split('\n');
      // No capability left, none to gain.
      assert.deepEqual(
        status.map((l) => l.replace(/\s+/g, ' ')),
        ['CapPrm: 0000000000000000', 'CapEff: 0000000000000000', 'CapAmb: 0000000000000000', 'NoNewPrivs: 1'],
      );
      assert.equal(uid, leased.trim(), 'the uid leased for the allocation');
      assert.notEqual(Number(uid), 0);
      assert.ok(Number(uid) >= DEFAULT_TASK_UID_RANGE.min && Number(uid) <= DEFAULT_TASK_UID_RANGE.max, uid);
      assert.equal(gid, uid);
      assert.equal(groups, uid, 'no supplementary groups');
      assert.equal(b.out.trim(), uid, 'the tasks of one allocation share its uid');
      assert.notEqual(other.out.trim(), uid, 'another allocation has another uid');
      // The task's directories are its own; its logs stay the agent's.
      const local = await stat(join(a.cfg.cwd, 'local'));
      assert.equal(local.uid, Number(uid));
      assert.equal(local.mode & 0o777, 0o700);
      assert.equal((await stat(join(a.cfg.cwd, 'logs'))).uid, 0);
    },
  );

  void test(
    'both ways of dropping to the uid (unshare, setpriv) leave the same identity',
    { skip },
    async () => {
      const cap = await nodeIsolation();
      assert.ok(cap.unsharePath !== undefined, 'util-linux here has unshare -S/-G');
      const { unsharePath: _unshare, ...setprivOnly } = cap;
      const withSetpriv = drivers.exec({
        logger: silentLogger(),
        enabled: true,
        dataDir: data.path,
        isolation: setprivOnly,
      });
      const script = 'id -u; id -G; grep -E "^(CapEff|NoNewPrivs):" /proc/self/status | tr -s "\\t " " "';
      const identity = async (driver: Driver): Promise<string[]> => {
        const cfg = await taskConfig(data, 'sh', ['-c', script]);
        const h = await driver.start(cfg);
        handles.push(h);
        assert.deepEqual(await h.wait(), { exitCode: 0 });
        const [uid = '', ...rest] = (await stdoutOf(cfg)).trim().split('\n');
        // Each allocation has its own uid: compare the rest, and that the groups are the uid's own.
        assert.notEqual(uid, '0');
        return rest.map((l) => l.replaceAll(uid, 'UID'));
      };
      const expected = ['UID', 'CapEff: 0000000000000000', 'NoNewPrivs: 1'];
      assert.deepEqual(await identity(exec), expected);
      assert.deepEqual(await identity(withSetpriv), expected);
    },
  );

  void test('setuid programs do not raise privileges (no_new_privs)', { skip }, async () => {
    const { out } = await run('grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status');
    assert.match(out, /NoNewPrivs:\s+1/);
    assert.match(out, /CapEff:\s+0+\n/);
  });

  void test(
    'user: is refused unless the operator allowed it, and honoured when allowed',
    { skip },
    async () => {
      const cfg = await taskConfig(data, 'id', ['-u'], { user: 'root' });
      await assert.rejects(exec.start(cfg), (err: unknown) => {
        assert.ok(err instanceof ExecError);
        assert.equal(
          err.message,
          'user "root" is not allowed on this node; the operator can allow it with --allow-task-user root',
        );
        return true;
      });
      const { result, out } = await run('id -un', { user: 'nobody' });
      assert.deepEqual(result, { exitCode: 0 });
      assert.equal(out.trim(), 'nobody');
    },
  );

  void test('a memory hog is OOM-killed and reported with its limit', { skip }, async () => {
    const { result } = await run('x=$(head -c 200000000 /dev/zero | tr "\\0" x); echo survived', {
      resources: { memory: 32 },
    });
    assert.equal(result.oomKilled, true, JSON.stringify(result));
    assert.equal(result.memoryLimitMiB, 32);
    assert.equal(describeExit(result), 'killed: out of memory (limit 32 MiB)');
  });

  void test('a fork bomb is held by the pids limit and the node survives', { skip }, async () => {
    const cfg = await taskConfig(
      data,
      'sh',
      // exec: the task's own shell must not need a fork (the bomb may have taken every pid by then).
      ['-c', 'bomb() { bomb | bomb & }; bomb; echo started; exec sleep 300'],
      {
        resources: { pids: 40 },
      },
    );
    const h = await start(cfg);
    // The bomb keeps hitting the limit: fork fails inside, the count never goes over it.
    let peak = 0;
    await waitFor(
      async () => {
        const u = await h.usage();
        peak = Math.max(peak, u?.pids ?? 0);
        // A refused fork is the proof the limit held; a sampled peak would miss short spikes.
        return (await stderrOf(cfg)).match(/fork|resource/i) !== null;
      },
      { timeoutMs: 30_000, description: 'the bomb to be refused a fork' },
    );
    for (let i = 0; i < 20; i++) {
      const u = await h.usage();
      peak = Math.max(peak, u?.pids ?? 0);
      assert.ok((u?.pids ?? 0) <= 40, `pids ${u?.pids}`);
    }
    assert.ok(peak > 1, 'the bomb did fork');
    const cgroup = await (await nodeIsolation()).cgroups?.open(taskCgroupName(cfg.allocId, cfg.task));
    // Processes of the bomb come and go; the task's own (sleep) stays: some, never over the limit.
    const pids = await waitFor(
      async () => {
        const p = (await cgroup?.pids()) ?? [];
        assert.ok(p.length <= 40, `${p.length} processes in the cgroup`);
        return p.length > 0 ? p : undefined;
      },
      { timeoutMs: 10_000, description: 'the task cgroup listing its processes' },
    );
    assert.ok(pids.length > 0 && pids.length <= 40);
    await h.stop('SIGTERM', 200);
    // A killed process leaves cgroup.procs a moment before /proc shows it dead: wait for that moment.
    for (const pid of pids)
      await waitFor(() => !isAlive(pid), {
        timeoutMs: 5_000,
        description: `process ${pid} of the bomb to be gone after the stop`,
      });
  });

  void test('a task that daemonizes leaves no process after stop', { skip }, async () => {
    const cfg = await taskConfig(data, 'sh', [
      '-c',
      // setsid: a new session; double fork: reparented to the namespace's init.
      'setsid sh -c "sleep 300" & (sh -c "sleep 301 & echo forked" &); sleep 0.1; echo started; sleep 302',
    ]);
    const h = await start(cfg);
    await waitFor(async () => (await stdoutOf(cfg)).includes('started'));
    const cgroup = await (await nodeIsolation()).cgroups?.open(taskCgroupName(cfg.allocId, cfg.task));
    assert.ok(cgroup !== undefined);
    // bwrap (2), the shell, both daemons' shells and sleeps.
    const pids = await waitFor(
      async () => {
        const p = await cgroup.pids();
        return p.length >= 6 ? p : undefined;
      },
      { description: 'the daemons to run' },
    );
    assert.deepEqual(await h.stop('SIGTERM', 5_000), { signal: 'SIGTERM' });
    // A killed process leaves cgroup.procs a moment before /proc shows it dead: wait for that moment.
    for (const pid of pids)
      await waitFor(() => !isAlive(pid), {
        timeoutMs: 5_000,
        description: `process ${pid} to be gone after the stop`,
      });
    assert.equal(
      await (await nodeIsolation()).cgroups?.open(taskCgroupName(cfg.allocId, cfg.task)),
      undefined,
    );
  });

  void test(
    '/sys and sensitive /proc files are masked, even for a task running as root',
    { skip },
    async () => {
      // Those this kernel has (/proc/kcore is missing in some VMs).
      const masked = [
        '/proc/kcore',
        '/proc/keys',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/proc/sysrq-trigger',
      ].filter((p) => existsSync(p));
      assert.ok(masked.length > 0);
      const script = [
        'echo "sys=$(ls /sys | tr "\\n" " ")"',
        'echo "sysfs=$(ls /sys/class /sys/kernel /sys/devices 2>/dev/null | wc -l)"',
        ...masked.map((p) => `echo "${p}=$(head -c 64 ${p} 2>/dev/null | wc -c)"`),
        'echo "proc-sys=$(echo 1 > /proc/sys/kernel/ctrl-alt-del 2>/dev/null && echo written || echo denied)"',
        'echo "sys-write=$(touch /sys/x 2>/dev/null && echo written || echo denied)"',
        'echo "uid=$(id -u)"',
      ].join('\n');
      const cfg = await taskConfig(data, 'sh', ['-c', script], { user: 'root' });
      const h = await asRoot.start(cfg);
      handles.push(h);
      assert.deepEqual(await h.wait(), { exitCode: 0 });
      const out = await stdoutOf(cfg);
      const seen = keyValues(out);
      assert.equal(seen['sys'], '');
      assert.equal(seen['sysfs'], '0');
      for (const p of masked) assert.equal(seen[p], '0', `${p} shows nothing`);
      assert.equal(seen['proc-sys'], 'denied');
      assert.equal(seen['sys-write'], 'denied');
      assert.equal(seen['uid'], '0');
    },
  );

  void test(
    'a task allowed to run as root keeps only a short list of capabilities: no mount, no mknod',
    { skip },
    async () => {
      const script = [
        'awk \'/^(Cap(Eff|Prm)|NoNewPrivs):/ { sub(":", "", $1); print $1 "=" $2 }\' /proc/self/status',
        'mkdir -p local/m',
        'echo "mount=$(mount -t tmpfs none local/m 2>/dev/null && echo done || echo denied)"',
        'echo "mknod=$(mknod local/disk b 8 0 2>/dev/null && echo done || echo denied)"',
        'echo "chown=$(touch local/f && chown 1234:1234 local/f && stat -c %u local/f)"',
        'echo "uid=$(id -u)"',
      ].join('\n');
      const cfg = await taskConfig(data, 'sh', ['-c', script], { user: 'root' });
      const h = await asRoot.start(cfg);
      handles.push(h);
      assert.deepEqual(await h.wait(), { exitCode: 0 });
      const seen = keyValues(await stdoutOf(cfg));
      // capability(7) numbers of the list.
      const numbers: Record<string, number> = {
        CAP_CHOWN: 0,
        CAP_DAC_OVERRIDE: 1,
        CAP_FOWNER: 3,
        CAP_FSETID: 4,
        CAP_KILL: 5,
        CAP_SETGID: 6,
        CAP_SETUID: 7,
        CAP_SETPCAP: 8,
        CAP_NET_BIND_SERVICE: 10,
        CAP_SYS_CHROOT: 18,
        CAP_AUDIT_WRITE: 29,
        CAP_SETFCAP: 31,
      };
      const want = ROOT_TASK_CAPABILITIES.reduce((m, c) => m | (1n << BigInt(numbers[c]!)), 0n);
      assert.equal(BigInt(`0x${seen['CapEff']}`), want, `effective: ${seen['CapEff']}`);
      assert.equal(BigInt(`0x${seen['CapPrm']}`), want, `permitted: ${seen['CapPrm']}`);
      // What keeps a later exec (awk here) from getting the rest back, as root would otherwise.
      assert.equal(seen['NoNewPrivs'], '1');
      assert.equal(seen['mount'], 'denied');
      assert.equal(seen['mknod'], 'denied');
      assert.equal(seen['chown'], '1234', 'what root needs for its own files still works');
      assert.equal(seen['uid'], '0');
    },
  );

  void test('a device given to the task is in its /dev; others are not', { skip }, async () => {
    // /dev/kmsg stands in for a GPU's /dev/nvidia0: a host device file outside the minimal /dev.
    const script = 'test -e /dev/kmsg && echo seen || echo hidden; test -e /dev/nvidia-absent && echo odd';
    const given = await run(script, { devicePaths: ['/dev/kmsg', '/dev/nvidia-absent'] });
    assert.equal(given.out.trim(), 'seen', 'a granted device is bound; a missing one is skipped');
    const plain = await run(script);
    assert.equal(plain.out.trim(), 'hidden');
  });

  void test(
    "an unprivileged task's /dev is the machine's shared one: ptys work, nothing can be changed",
    { skip },
    async () => {
      requireTool('python3');
      const cap = await nodeIsolation();
      assert.ok(cap.sandboxDev !== undefined, 'the shared /dev was made');
      const script = [
        'awk \'$5 == "/dev" { print "dev=" $(NF-2) " " $(NF-1) }\' /proc/self/mountinfo',
        'python3 -c "import os, pty; m, s = pty.openpty(); print(\'pty=\' + os.ttyname(s))"',
        'echo "write=$(touch /dev/x 2>/dev/null && echo ok || echo denied)"',
        'echo "null=$(echo hi > /dev/null && echo ok)"',
        'echo "zero=$(head -c 4 /dev/zero | wc -c)"',
      ].join('; ');
      const { result, out } = await run(script);
      assert.deepEqual(result, { exitCode: 0 });
      const seen = keyValues(out);
      assert.equal(seen['dev'], 'tmpfs unum-sandbox-dev', 'the shared tmpfs, bound');
      assert.match(seen['pty'] ?? '', /^\/dev\/pts\/\d+$/);
      assert.equal(seen['write'], 'denied');
      assert.equal(seen['null'], 'ok');
      assert.equal(seen['zero'], '4');
      // A root task gets a /dev of its own: it could change a shared one.
      const cfg = await taskConfig(
        data,
        'sh',
        // The last mount on /dev (the host's is under it, from the read-only root).
        ['-c', 'awk \'$5 == "/dev" { l = $(NF-1) " " $(NF) } END { print l }\' /proc/self/mountinfo'],
        { user: 'root' },
      );
      const h = await asRoot.start(cfg);
      handles.push(h);
      assert.deepEqual(await h.wait(), { exitCode: 0 });
      const rootDev = await stdoutOf(cfg);
      assert.match(rootDev, /^tmpfs /, 'bwrap made it');
      assert.doesNotMatch(rootDev, /unum-sandbox-dev/);
    },
  );

  void test(
    'a shared /dev unmounted since start-up: tasks still start, and it is made again',
    { skip },
    async () => {
      const dir = `/run/unum-test-${newId().slice(0, 8)}/sandbox-dev`;
      const driver = drivers.exec({
        logger: silentLogger(),
        enabled: true,
        dataDir: data.path,
        isolation: { ...(await nodeIsolation()), sandboxDev: dir },
      });
      try {
        const cfg = await taskConfig(data, 'sh', ['-c', 'test -c /dev/null && echo ok']);
        const h = await driver.start(cfg);
        handles.push(h);
        assert.deepEqual(await h.wait(), { exitCode: 0 });
        assert.equal((await stdoutOf(cfg)).trim(), 'ok');
        await waitFor(() => sandboxDevReady(dir), { description: 'the shared /dev to be made again' });
      } finally {
        for (const m of [join(dir, 'pts'), dir]) spawnSync('umount', [m]);
        await rm(dirname(dir), { recursive: true, force: true });
      }
    },
  );

  void test('the hostname is the allocation name', { skip }, async () => {
    const { out } = await run('hostname', { allocName: 'web.api[3]' });
    assert.equal(out.trim(), 'web-api-3');
  });

  void test('the program must be visible inside the sandbox', { skip }, async () => {
    const dir = join(tmpdir(), `unum-bin-${newId()}`);
    await mkdir(dir);
    try {
      await writeFile(join(dir, 'tool'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
      await assert.rejects(exec.start(await taskConfig(data, join(dir, 'tool'), [])), (err: unknown) => {
        assert.ok(err instanceof ExecError);
        assert.match(err.message, /not visible inside the task sandbox \(its \/tmp is private\)/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('sandbox pieces', () => {
  void test('bwrap arguments: read-only host, private /tmp, data dir hidden, own dirs bound, uid dropped', () => {
    const args = bwrapArgs({
      hide: ['/var/lib/unum'],
      taskDir: '/var/lib/unum/agent/allocs/A/web',
      logsDir: '/var/lib/unum/agent/allocs/A/web/logs',
      sharedDir: '/var/lib/unum/agent/allocs/A/alloc',
      maskedProc: { files: ['/proc/kcore'], dirs: ['/proc/acpi'] },
      hostname: 'web-0',
      tmpfsBytes: 1024,
      statusFd: 3,
      drop: { tool: 'unshare', path: '/usr/bin/unshare', uid: 200001, gid: 200001 },
      command: 'python3',
      args: ['-m', 'http.server'],
    });
    const text = args.join(' ');
    const at = (s: string) => text.indexOf(s);
    assert.ok(text.startsWith('--ro-bind / / --dev /dev --proc /proc'));
    assert.ok(at('--ro-bind /dev/null /proc/kcore') > 0);
    assert.ok(at('--tmpfs /proc/acpi') > 0);
    // A root-owned 0555 tmpfs: an unprivileged task can not write it (root gets a read-only one).
    assert.ok(at('--perms 0555 --tmpfs /sys') > 0);
    // An unprivileged task can not write /proc/sys anyway; for root it is made read-only.
    assert.ok(!text.includes('/proc/sys'));
    assert.ok(at('--tmpfs /tmp') > 0);
    // Hidden first, then the allocation's own directories on top, reachable by the task's uid.
    assert.ok(at('--tmpfs /var/lib/unum') < at('--perms 0711 --dir /var/lib/unum/agent/allocs/A '));
    assert.ok(
      at('--perms 0711 --dir /var/lib/unum/agent/allocs/A ') < at('--bind /var/lib/unum/agent/allocs/A/web'),
    );
    assert.ok(
      at('--ro-bind /var/lib/unum/agent/allocs/A/web/logs') > at('--bind /var/lib/unum/agent/allocs/A/web '),
    );
    assert.ok(at('--bind /var/lib/unum/agent/allocs/A/alloc /var/lib/unum/agent/allocs/A/alloc') > 0);
    assert.ok(text.includes('--unshare-pid --unshare-ipc --unshare-uts --hostname web-0 --new-session'));
    assert.ok(!text.includes('--die-with-parent') && !text.includes('--unshare-net'));
    assert.ok(
      text.endsWith('--json-status-fd 3 -- /usr/bin/unshare -S 200001 -G 200001 -- python3 -m http.server'),
    );
    // Outside a sandbox, setpriv sets no_new_privs itself.
    assert.deepEqual(dropArgs({ tool: 'setpriv', path: '/usr/bin/setpriv', uid: 7, gid: 8 }), [
      '/usr/bin/setpriv',
      '--reuid=7',
      '--regid=8',
      '--clear-groups',
      '--no-new-privs',
      '--',
    ]);
  });

  void test('a data dir under /tmp is hidden by the private /tmp already', () => {
    const args = bwrapArgs({
      hide: ['/tmp/d'],
      taskDir: '/tmp/d/agent/allocs/A/t',
      maskedProc: { files: [], dirs: [] },
      hostname: 'h',
      tmpfsBytes: 1,
      statusFd: 3,
      command: 'true',
      args: [],
    }).join(' ');
    assert.ok(!args.includes('--tmpfs /tmp/d'));
    assert.ok(args.includes('--perms 0711 --dir /tmp/d --perms 0711 --dir /tmp/d/agent'));
  });

  void test('hostnames from allocation names', () => {
    assert.equal(sanitizeHostname('web.web[0]'), 'web-web-0');
    assert.equal(sanitizeHostname('Big_Job.Group[12]'), 'big-job-group-12');
    assert.equal(sanitizeHostname('...'), 'task');
    assert.equal(sanitizeHostname('x'.repeat(100)).length, 63);
  });

  void test('isWithin', () => {
    assert.ok(isWithin('/a', '/a'));
    assert.ok(isWithin('/a', '/a/b'));
    assert.ok(!isWithin('/a', '/ab'));
    assert.ok(!isWithin('/a/b', '/a'));
  });

  void test('exit codes above 128 read as signals; bwrap status lines', () => {
    assert.deepEqual(fromCode(143), { signal: 'SIGTERM' });
    assert.deepEqual(fromCode(137), { signal: 'SIGKILL' });
    assert.deepEqual(fromCode(1), { exitCode: 1 });
    assert.deepEqual(fromCode(255), { exitCode: 255 });
    assert.deepEqual(parseBwrapStatus('{ "child-pid": 12, "pid-namespace": 1 }\n{ "exit-code": 3 }\n'), {
      childPid: 12,
      exitCode: 3,
    });
    assert.deepEqual(parseBwrapStatus('{ "child-pid": 12 }\n{ "exit-c'), { childPid: 12 });
  });

  void test('exit descriptions', () => {
    assert.equal(
      describeExit({ signal: 'SIGKILL', oomKilled: true, memoryLimitMiB: 64 }),
      'killed: out of memory (limit 64 MiB)',
    );
    assert.equal(
      describeExit({ detail: 'exited while the agent was down; exit status unknown' }),
      'exited while the agent was down; exit status unknown',
    );
    assert.equal(describeExit({}), 'exit status unknown');
  });
});

/** `key=value` lines (a later key wins): what the sandbox scripts print. */
function keyValues(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
