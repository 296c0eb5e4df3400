/**
 * Tasks outlive the agent: the agent runs in a child process (so that it can be killed with
 * SIGKILL) against a real server in this process (memory store), and is started again on the same
 * data dir. What a user would notice: the same pids, still running, logs that go on in the same
 * file, and the real exit code of a task that ended while no agent was watching.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { UnumClient } from '../api/client.ts';
import type { Allocation } from '../core/types.ts';
import { startServer, type RunningServer } from '../server/index.ts';
import { bootstrapped } from '../testing/acl.ts';
import { waitFor } from '../testing/wait.ts';
import { requireExecDriverTools } from '../testing/tools.ts';
import { taskDirPaths } from './runner/alloc-dir.ts';
import { isAlive, killQuietly, tempDir } from './fixtures.ts';
import type { PersistedAlloc } from './state.ts';

/** An agent in a child process: `node -e` with a few lines that call startAgent. */
class AgentProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private stdout = '';
  stderr = '';

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout?.on('data', (c: Buffer) => (this.stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  static async start(dataDir: string, server: string, token: string): Promise<AgentProcess> {
    const agentUrl = new URL('./index.ts', import.meta.url).href;
    const logUrl = new URL('../core/log.ts', import.meta.url).href;
    const code = `
      import { startAgent } from ${JSON.stringify(agentUrl)};
      import { createLogger } from ${JSON.stringify(logUrl)};
      const agent = await startAgent({
        dataDir: ${JSON.stringify(dataDir)},
        servers: [${JSON.stringify(server)}],
        httpAddr: '127.0.0.1:0',
        logger: createLogger('agent', 'warn'),
        network: { mode: 'host' },
      });
      process.stdout.write(JSON.stringify({ nodeId: agent.nodeId }) + '\\n');
      // A graceful stop leaves the tasks running; the process must then exit on its own.
      process.once('SIGTERM', () => void agent.stop().then(() => process.stdout.write('stopped\\n')));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The join token of its first registration; afterwards it uses its own credential.
      env: { ...process.env, UNUM_TOKEN: token },
    });
    const agent = new AgentProcess(child);
    await waitFor(() => agent.stdout.includes('\n') || agent.child.exitCode !== null, {
      description: 'the agent process to start',
    });
    if (agent.child.exitCode !== null) throw new Error(`the agent process failed: ${agent.stderr}`);
    return agent;
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM; resolves with the exit code once the process has exited by itself. */
  async terminate(): Promise<number | null> {
    this.child.kill('SIGTERM');
    return this.exited;
  }
}

void describe('agent restart', () => {
  before(requireExecDriverTools);
  let dir: { path: string; cleanup: () => Promise<void> };
  let server: RunningServer;
  let client: UnumClient;
  let token = '';
  const agents: AgentProcess[] = [];
  const pids: number[] = [];

  before(async () => {
    dir = await tempDir('unum-restart-');
    server = await startServer({ dataDir: join(dir.path, 'server'), addr: '127.0.0.1:0', store: 'memory:' });
    ({ client, token } = await bootstrapped(server.addr));
  });
  after(async () => {
    for (const a of agents) a.child.kill('SIGKILL');
    // Whatever a failed test left running: the tasks it knew of, and those in the agents' state files.
    for (const pid of pids) killQuietly(pid);
    for (const node of ['node-a', 'node-b']) {
      const states = join(dir.path, node, 'agent', 'state');
      for (const name of await readdir(states).catch(() => [])) {
        const saved = JSON.parse(await readFile(join(states, name), 'utf8')) as PersistedAlloc;
        for (const t of Object.values(saved.tasks)) killQuietly(t.state.pid);
      }
    }
    await server.stop();
    await dir.cleanup();
  });

  async function agent(dataDir: string): Promise<AgentProcess> {
    const a = await AgentProcess.start(dataDir, server.addr, token);
    agents.push(a);
    return a;
  }

  /** The job's allocation once `ok` holds for it (as the server has it). */
  async function allocWhere(
    job: string,
    ok: (a: Allocation) => boolean,
    description: string,
  ): Promise<Allocation> {
    return waitFor(
      async () => (await client.jobAllocations(job)).items.find((a) => a.desiredStatus === 'run' && ok(a)),
      { description, timeoutMs: 20_000 },
    );
  }

  async function stopJob(job: string, pid: number): Promise<void> {
    await client.stopJob(job);
    await waitFor(() => !isAlive(pid), { description: `the tasks of ${job} to stop`, timeoutMs: 20_000 });
  }

  void test('kill -9 of the agent, then a restart: the same pids keep running, logs go on in the same file', async () => {
    const dataDir = join(dir.path, 'node-a');
    const first = await agent(dataDir);
    await client.submitJob({
      job: 'ticker',
      groups: [
        {
          name: 'g',
          tasks: [
            {
              name: 'tick',
              command: 'sh',
              args: ['-c', 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'],
              resources: { cpu: 100, memory: 32 },
            },
          ],
        },
      ],
    });
    const running = await allocWhere(
      'ticker',
      (a) => a.clientStatus === 'running' && a.taskStates['tick']?.pid !== undefined,
      'the task to run',
    );
    const pid = running.taskStates['tick']!.pid!;
    pids.push(pid);
    const log = taskDirPaths(join(dataDir, 'agent', 'allocs'), running.id, 'tick').stdout;
    const inode = (await stat(log)).ino;
    await waitFor(async () => (await readFile(log, 'utf8')).includes('tick 3\n'));

    await first.kill9();
    assert.equal(isAlive(pid), true, 'the task outlives its agent');
    const before = (await readFile(log, 'utf8')).split('\n').length;

    await agent(dataDir);
    const after = await allocWhere(
      'ticker',
      (a) =>
        a.id === running.id && (a.taskStates['tick']?.events.some((e) => e.type === 'reattached') ?? false),
      'the restarted agent to re-attach',
    );
    const tick = after.taskStates['tick']!;
    assert.equal(after.clientStatus, 'running');
    assert.equal(tick.state, 'running');
    assert.equal(tick.pid, pid, 'the same process');
    assert.equal(tick.events.filter((e) => e.type === 'started').length, 1, 'not started again');
    assert.equal(isAlive(pid), true);
    assert.equal(
      (await client.jobAllocations('ticker')).items.filter((a) => a.desiredStatus === 'run').length,
      1,
      'no second copy',
    );
    // Logs go on in the same file, and `unum logs` (through the server and the new agent) reads them.
    await waitFor(async () => (await readFile(log, 'utf8')).split('\n').length > before + 3);
    assert.equal((await stat(log)).ino, inode);
    let text = '';
    for await (const chunk of client.allocLogs(running.id, { task: 'tick' })) text += chunk;
    const lines = text.trimEnd().split('\n');
    assert.equal(lines[0], 'tick 1');
    assert.ok(lines.length >= before + 3, 'lines written after the restart are served');
    lines.forEach((l, i) => assert.equal(l, `tick ${i + 1}`, 'one stream, in order'));

    // A graceful stop of the agent (unum agent's Ctrl-C) leaves the task running too, and the
    // agent's process exits by itself.
    assert.equal(await agents.at(-1)!.terminate(), 0);
    assert.equal(isAlive(pid), true);
    await agent(dataDir);
    const again = await allocWhere(
      'ticker',
      (a) => (a.taskStates['tick']?.events.filter((e) => e.type === 'reattached').length ?? 0) === 2,
      're-attached a second time',
    );
    assert.equal(again.taskStates['tick']?.pid, pid);
    await stopJob('ticker', pid);
    assert.equal(await agents.at(-1)!.terminate(), 0);
  });

  void test('a task that exits while the agent is down is reported with its exit code after the restart', async () => {
    const dataDir = join(dir.path, 'node-b');
    const first = await agent(dataDir);
    const nodeId = (await readFile(join(dataDir, 'agent', 'node-id'), 'utf8')).trim();
    // The task exits when the test says so (a file appears in its directory): after the agent is gone.
    await client.submitJob({
      job: 'exiter',
      type: 'batch',
      constraints: [{ attribute: 'node.id', value: nodeId }],
      groups: [
        {
          name: 'g',
          restart: { attempts: 0, mode: 'fail' },
          tasks: [
            {
              name: 't',
              command: 'sh',
              args: ['-c', 'while [ ! -e go ]; do sleep 0.05; done; exit 42'],
              resources: { cpu: 100, memory: 32 },
            },
          ],
        },
      ],
    });
    const running = await allocWhere(
      'exiter',
      (a) => a.clientStatus === 'running' && a.taskStates['t']?.pid !== undefined,
      'the task to run',
    );
    const pid = running.taskStates['t']!.pid!;
    pids.push(pid);

    await first.kill9();
    await writeFile(join(taskDirPaths(join(dataDir, 'agent', 'allocs'), running.id, 't').dir, 'go'), '');
    await waitFor(() => !isAlive(pid), { description: 'the task to exit while the agent is down' });

    await agent(dataDir);
    const done = await waitFor(
      async () => {
        const a = await client.getAllocation(running.id);
        return a.clientStatus === 'failed' ? a : undefined;
      },
      { description: 'the exit to be reported', timeoutMs: 20_000 },
    );
    const t = done.taskStates['t']!;
    assert.equal(t.state, 'dead');
    assert.equal(t.exitCode, 42);
    const terminated = t.events.find((e) => e.type === 'terminated');
    assert.equal(terminated?.message, 'exited with code 42 while the agent was down');
    assert.equal(terminated?.exitCode, 42);
    const events = await client.events({ job: 'exiter', limit: 1000 });
    assert.ok(
      events.events.some(
        (e) =>
          e.type === 'task-terminated' && e.message.includes('exited with code 42 while the agent was down'),
      ),
      'the cluster event says so',
    );
    // The failed instance was replaced (on this node): stop that one too before the agent goes.
    await client.stopJob('exiter');
    await waitFor(
      async () =>
        (await client.jobAllocations('exiter')).items.every(
          (a) => a.clientStatus !== 'running' && a.clientStatus !== 'pending',
        ),
      { description: 'every instance stopped', timeoutMs: 20_000 },
    );
    assert.equal(await agents.at(-1)!.terminate(), 0);
  });
});
