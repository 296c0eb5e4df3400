/**
 * The quick start, end to end, as a new user runs it: `unum up` in its own process, then the CLI
 * as separate processes against it — run a 3-instance python3 web service, look at it, read its
 * logs, kill -9 an instance and watch unum restart it, run a one-off command, stop everything.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Allocation, Job } from '../src/core/types.ts';
import { freePort } from '../src/testing/net.ts';
import { missingNetworkTools, removeTestNetwork, testNetwork } from '../src/testing/network.ts';
import { requireExecDriverTools, requireTool } from '../src/testing/tools.ts';
import { waitFor } from '../src/testing/wait.ts';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin', 'unum.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Python for a task: `call(path, token)` → (status, body) through $UNUM_API_SOCKET. */
const TASK_API_CLIENT = [
  'import sys, os, json, socket, http.client',
  'class C(http.client.HTTPConnection):',
  '  def connect(self):',
  '    self.sock = socket.socket(socket.AF_UNIX)',
  "    self.sock.connect(os.environ['UNUM_API_SOCKET'])",
  'def call(u, t):',
  "  c = C('localhost')",
  "  c.request('GET', u, headers={'authorization': 'Bearer ' + t} if t else {})",
  '  r = c.getresponse()',
  '  return r.status, r.read()',
].join('\n');

describe('unum up, end to end', { timeout: 240_000 }, () => {
  let dir: string;
  const network = testNetwork();
  let up: ChildProcess;
  let addr: string;
  let upOutput = '';

  const unum = (args: string[], timeoutMs = 60_000): Promise<Result> =>
    new Promise((res) => {
      execFile(
        process.execPath,
        [bin, ...args],
        {
          env: { ...process.env, UNUM_ADDR: addr, UNUM_DATA_DIR: dir, NO_COLOR: '1' },
          timeout: timeoutMs,
          cwd: root,
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          res({ code, stdout, stderr });
        },
      );
    });
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await unum([...args, '--json']);
    assert.equal(r.code, 0, `unum ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Runs `script` as a one-off job (`unum run -- sh -c`) and returns its output once it matches `until`. */
  const runScript = async (script: string, until: RegExp): Promise<string> => {
    const r = await unum(['run', '--', 'sh', '-c', script], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const id = /run-[0-9a-f]{8}/.exec(r.stdout)?.[0];
    assert.ok(id, r.stdout);
    return waitFor(async () => {
      const l = await unum(['logs', id]);
      return until.test(l.stdout) ? l.stdout : undefined;
    });
  };
  const webAllocs = async () =>
    (await json<{ allocations: Allocation[] }>(['status', 'web'])).allocations.filter(
      (a) => a.desiredStatus === 'run',
    );

  before(async () => {
    // The example service is Python's http.server: without python3 every test here would wait for
    // instances that never become healthy.
    requireTool('python3');
    requireExecDriverTools();
    dir = mkdtempSync(join(tmpdir(), 'unum-e2e-'));
    // Where bubblewrap is missing, tasks run outside a sandbox as uids of their own and reach their
    // directories through the data dir's path: mkdtemp's 0700 would hide them (http.server's 404).
    chmodSync(dir, 0o755);
    const port = await freePort();
    addr = `http://127.0.0.1:${port}`;
    // As root, the allocations get networks of their own, on a bridge and subnet of this test's.
    const net =
      missingNetworkTools() === undefined
        ? ['--network-bridge', network.bridge, '--alloc-subnet', network.subnet]
        : ['--network', 'host'];
    up = spawn(process.execPath, [bin, 'up', '--addr', `127.0.0.1:${port}`, '--data-dir', dir, ...net], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    up.stdout?.on('data', (d: Buffer) => (upOutput += d.toString()));
    up.stderr?.on('data', (d: Buffer) => (upOutput += d.toString()));
    await waitFor(
      async () => {
        const r = await unum(['nodes', '--json']);
        if (r.code !== 0) return false;
        const nodes = JSON.parse(r.stdout) as { items?: { status: string }[] } | { status: string }[];
        const list = Array.isArray(nodes) ? nodes : (nodes.items ?? []);
        return list.some((n) => n.status === 'ready');
      },
      { timeoutMs: 60_000, intervalMs: 200, description: `a ready node (unum up said: ${upOutput})` },
    );
  });

  after(async () => {
    // Also after a `before` that stopped early (a missing tool): nothing may have been started.
    const started = up as ChildProcess | undefined;
    if (started !== undefined && started.exitCode === null) {
      started.kill('SIGINT');
      await new Promise((r) => started.once('exit', r));
    }
    if ((dir as string | undefined) !== undefined) rmSync(dir, { recursive: true, force: true });
    if (missingNetworkTools() === undefined) removeTestNetwork(network);
  });

  test('unum up prints the API address', () => {
    assert.match(upOutput, new RegExp(addr.replace(/[.:/]/g, '\\$&')));
  });

  test('run examples/web.yaml follows the rollout until all 3 instances run', async () => {
    const r = await unum(['run', 'examples/web.yaml'], 120_000);
    assert.equal(r.code, 0, `run failed:\n${r.stdout}\n${r.stderr}`);
    const allocs = await webAllocs();
    assert.equal(allocs.length, 3);
    for (const a of allocs) assert.equal(a.clientStatus, 'running');
    // Each instance really serves on its own port.
    for (const a of allocs) {
      const port = a.resources.ports.find((p) => p.name === 'http')?.value;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(res.status, 200);
      await res.text();
    }
  });

  test('status and ps show the job, its allocations, node, state and ports', async () => {
    const status = await unum(['status', 'web']);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /running/);
    const allocs = await webAllocs();
    for (const a of allocs)
      assert.ok(status.stdout.includes(a.id.slice(0, 8)), 'status lists each allocation');
    const ps = await unum(['ps']);
    assert.equal(ps.code, 0);
    for (const a of allocs) {
      assert.ok(ps.stdout.includes(a.id.slice(0, 8)));
      assert.ok(ps.stdout.includes(String(a.resources.ports[0]?.value)), 'ps shows the port');
    }
    const detail = await json<{ job: Job }>(['status', 'web']);
    assert.equal(detail.job.spec.groups[0]?.restart.attempts, 3, 'defaults are visible in --json');
  });

  test('logs shows the output of every instance, tagged with its allocation', async () => {
    const allocs = await webAllocs();
    const r = await unum(['logs', 'web', '--stderr']);
    assert.equal(r.code, 0, r.stderr);
    for (const a of allocs) {
      const tagged = r.stdout
        .split('\n')
        .filter((l) => l.includes(a.id.slice(0, 8)) && l.includes('GET / HTTP'));
      assert.ok(tagged.length > 0, `a request line tagged with ${a.id.slice(0, 8)} in:\n${r.stdout}`);
    }
  });

  test('logs -f follows new output', async () => {
    const child = spawn(process.execPath, [bin, 'logs', 'web', '-f', '--stderr'], {
      env: { ...process.env, UNUM_ADDR: addr, UNUM_DATA_DIR: dir, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const a = (await webAllocs())[0]!;
      const port = a.resources.ports[0]!.value;
      await waitFor(
        async () => {
          await (await fetch(`http://127.0.0.1:${port}/followed-marker`)).text();
          return out.includes('/followed-marker');
        },
        { timeoutMs: 20_000, intervalMs: 300, description: 'the followed request line' },
      );
      const line = out.split('\n').find((l) => l.includes('/followed-marker'))!;
      assert.ok(line.includes(a.id.slice(0, 8)), `tagged with the allocation: ${line}`);
    } finally {
      child.kill('SIGINT');
    }
  });

  test('kill -9 of an instance: unum restarts it and shows the cause', async () => {
    const victim = (await webAllocs())[0]!;
    const pid = victim.taskStates['server']?.pid;
    assert.ok(pid && alive(pid));
    process.kill(pid, 'SIGKILL');
    const restarted = await waitFor(
      async () => {
        const a = (await webAllocs()).find((x) => x.id === victim.id);
        const t = a?.taskStates['server'];
        return t && t.restarts >= 1 && t.state === 'running' && t.pid !== pid ? a : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, description: 'the task restarted' },
    );
    assert.ok(
      restarted.taskStates['server']?.events.some(
        (e) => e.type === 'restarting' && /SIGKILL/.test(e.message),
      ),
    );
    const status = await unum(['status', 'web']);
    assert.match(status.stdout, /SIGKILL/, 'status shows the cause');
    const events = await unum(['events', '--job', 'web', '--limit', '200']);
    assert.match(events.stdout, /SIGKILL/, 'events show the cause');
  });

  test('run -- CMD runs a one-off batch job whose logs show its output', async () => {
    const r = await unum(['run', '--', 'sh', '-c', 'echo hi'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const id = /run-[0-9a-f]{8}/.exec(r.stdout)?.[0];
    assert.ok(id, `a job id in: ${r.stdout}`);
    const logs = await waitFor(async () => {
      const l = await unum(['logs', id]);
      return l.stdout.includes('hi') ? l : undefined;
    });
    assert.match(logs.stdout, /hi/);
    const detail = await json<{ job: Job }>(['status', id]);
    assert.equal(detail.job.status, 'complete');
  });

  test('nobody can bootstrap ACLs anonymously once unum up has made its management token', async () => {
    const res = await fetch(`${addr}/v1/acl/bootstrap`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 409);
  });

  test('a task finds no token: the management token is out of its reach and the API refuses it', async () => {
    // What a hostile task would try: read unum up's token, then call the API with whatever it found.
    const script = [
      `cat ${join(dir, 'management-token')} >/dev/null 2>&1 && echo TOKEN-READ || echo TOKEN-UNREADABLE`,
      'env | grep -c unum-token- || true',
      `python3 -c "import urllib.request,urllib.error\ntry: urllib.request.urlopen('${addr}/v1/jobs?namespace=*')\nexcept urllib.error.HTTPError as e: print('HTTP', e.code)\nexcept Exception as e: print('NO-ROUTE', type(e).__name__)"`,
    ].join('; ');
    const out = await runScript(script, /HTTP|NO-ROUTE/);
    assert.match(out, /TOKEN-UNREADABLE/);
    assert.match(out, /(^|\] )0$/m, 'no token in its environment');
    assert.match(out, /HTTP 401|NO-ROUTE/, 'the API answers nothing without a token');
  });

  test('a task has a workload identity of its own, and it grants no access to jobs', async () => {
    const script = [
      'T=$(cat "$UNUM_IDENTITY_FILE")',
      // Through the task API: the socket in its secrets directory (its network cannot reach the host).
      `python3 -c "${TASK_API_CLIENT}\nfor u in ['/v1/identity/self', '/v1/jobs?namespace=default']:\n  s, b = call(u, sys.argv[1])\n  print('OK', json.loads(b).get('task')) if s == 200 else print('HTTP', s)\nprint('NOTOKEN', call('/v1/jobs?namespace=*', '')[0])" "$T"`,
    ].join('; ');
    const out = await runScript(script, /NOTOKEN \d+/);
    assert.match(out, /OK sh/, 'the task is told who it is (its task name)');
    assert.match(out, /HTTP 403/, 'and may not read jobs with it');
    assert.match(out, /NOTOKEN 401/, 'the socket adds no authority of its own');
  });

  test('a command that does not exist fails with the exec error in status and logs', async () => {
    const r = await unum(['run', '--', 'no-such-program-xyz'], 60_000);
    assert.notEqual(r.code, 0);
    const id = /run-[0-9a-f]{8}/.exec(r.stdout + r.stderr)?.[0];
    assert.ok(id);
    const status = await unum(['status', id]);
    assert.match(status.stdout, /no-such-program-xyz/);
    assert.match(status.stdout, /not found/);
    const logs = await unum(['logs', id, '--all', '--stderr']);
    assert.match(logs.stdout, /not found/);
  });

  test('bad job files get a clear error and change nothing', async () => {
    const before = await json<{ items: unknown[] }>(['status']);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'job: x\ngroups:\n  - name: g\n    tasks: [ {name: t\n');
    const yamlErr = await unum(['run', bad]);
    assert.equal(yamlErr.code, 1);
    assert.match(yamlErr.stderr, /bad\.yaml:\d+:\d+/);
    writeFileSync(
      bad,
      'job: x\ngroups:\n  - name: g\n    count: -1\n    tasks:\n      - name: t\n        comand: ls\n',
    );
    const fieldErr = await unum(['run', bad]);
    assert.equal(fieldErr.code, 1);
    assert.match(fieldErr.stderr, /groups\[0\]\.count/);
    assert.match(fieldErr.stderr, /did you mean "command"/);
    assert.doesNotMatch(fieldErr.stderr, /\n\s+at /, 'no stack trace');
    const afterList = await json<{ items: unknown[] }>(['status']);
    assert.equal(afterList.items.length, before.items.length);
  });

  test('a job that can never fit is accepted, stays pending, and status says why', async () => {
    const f = join(dir, 'huge.yaml');
    writeFileSync(
      f,
      'job: huge\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        command: sleep\n        args: ["60"]\n        resources: { cpu: 100, memory: 10000000 }\n',
    );
    const r = await unum(['run', f], 60_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /memory/);
    const status = await unum(['status', 'huge']);
    assert.match(status.stdout, /pending/);
    assert.match(status.stdout, /memory/);
    await unum(['stop', 'huge', '--detach']);
  });

  test('stop: every instance stops and nothing of the job is left running', async () => {
    const pids = (await webAllocs()).map((a) => a.taskStates['server']?.pid).filter((p): p is number => !!p);
    assert.equal(pids.length, 3);
    const r = await unum(['stop', 'web'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => pids.every((p) => !alive(p)), { timeoutMs: 20_000, description: 'instances gone' });
    const status = await json<{ job: Job; allocations: Allocation[] }>(['status', 'web']);
    assert.equal(status.job.status, 'dead');
    assert.ok(status.allocations.every((a) => a.clientStatus !== 'running'));
  });
});
