/**
 * Fake agents for tests of the servers with several nodes: each registers its node over the wire
 * (getting its own credential), heartbeats, and does at once what its allocations ask — a placed
 * one runs (healthy when its group has checks), a stopped one completes — without running anything.
 * The scheduler, the plan applier and the controllers run for real against it.
 */
import { UnumClient } from '../api/client.ts';
import type { NodeRegistration } from '../api/types.ts';
import { isActive } from '../core/alloc.ts';
import type { Allocation } from '../core/types.ts';

export interface FakeAgent {
  readonly id: string;
  /** A client with the node's own credential. */
  readonly client: UnumClient;
  /** Stops heartbeating and answering its allocations (the node then goes down). */
  stop(): Promise<void>;
}

/** A registration of a node with `cpu` millicores and `memory` MiB (defaults 4000 and 4096). */
export function fakeNode(id: string, over: Partial<NodeRegistration> = {}): NodeRegistration {
  return {
    id,
    name: id,
    address: 'http://127.0.0.1:9',
    resources: { cpu: 4000, memory: 4096, disk: 100_000 },
    reserved: { cpu: 0, memory: 0 },
    attributes: { os: 'linux', hostname: id },
    drivers: { exec: { detected: true, healthy: true } },
    portRange: { min: 20000, max: 20999 },
    ...over,
  };
}

/** What the agent reports for an allocation it was handed, if anything. */
function reportFor(a: Allocation) {
  if (a.desiredStatus === 'stop' && isActive(a))
    return { allocId: a.id, clientStatus: 'complete' as const, taskStates: {} };
  if (a.desiredStatus === 'run' && a.clientStatus === 'pending') {
    const checked = a.groupSpec.services.some((s) => s.check !== undefined);
    return {
      allocId: a.id,
      clientStatus: 'running' as const,
      taskStates: {},
      ...(checked ? { healthy: true } : {}),
    };
  }
  return undefined;
}

/** Registers `reg` with a token that may `node:write`, and plays its agent until `stop()`. */
export async function startFakeAgent(addr: string, token: string, reg: NodeRegistration): Promise<FakeAgent> {
  const joined = await new UnumClient({ addr, token }).registerNode(reg);
  const secret = joined.credential?.secret ?? token;
  const client = new UnumClient({ addr, token: secret });
  const abort = new AbortController();
  const beat = setInterval(() => void client.heartbeat(reg.id).catch(() => undefined), 1000);
  const loop = (async () => {
    let index = 0;
    while (!abort.signal.aborted) {
      try {
        const listed = await client.nodeAllocations(reg.id, { index, waitMs: 2000 }, abort.signal);
        index = listed.index;
        const updates = listed.items.flatMap((a) => reportFor(a) ?? []);
        if (updates.length > 0) await client.updateAllocations(reg.id, updates);
      } catch {
        if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, 100));
      }
    }
  })();
  return {
    id: reg.id,
    client,
    async stop() {
      clearInterval(beat);
      abort.abort();
      await loop;
    },
  };
}
