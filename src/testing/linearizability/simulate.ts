/**
 * A simulated key-value store and its clients, to test the checker on long histories whose answer
 * is known: correct (every operation applied atomically at one instant between its invocation and
 * its completion) unless a bug is planted.
 *
 * Time is simulated: an event queue, no sleeps. Each client makes one operation at a time; the
 * request reaches the store after a random delay, is applied there at once, and the reply comes
 * back after another. Some requests are lost, some replies are lost, some requests arrive after the
 * client gave up (applied late): the client records those as unknown. Some are refused (4xx): not
 * applied, recorded as failed.
 *
 * Planted bugs:
 * - `stale-reads`: reads are served from a replica that applies the leader's writes `lag` writes
 *   behind, as a cache served as if it were linearizable.
 * - `lost-writes`: now and then a write is acknowledged but not applied.
 */
import { Recorder, type Completion, type Operation, type Value } from './history.ts';
import { seededRandom } from './wgl.ts';

export interface SimulationOptions {
  seed: number;
  /** Operations to invoke in all (refused ones included). */
  operations: number;
  clients: number;
  keys: number;
  /** Share of operations whose client ends up not knowing the outcome; default 0.03. */
  unknownRate?: number;
  /** Share of operations refused; default 0.01. */
  refusalRate?: number;
  bug?: { kind: 'stale-reads'; lag: number } | { kind: 'lost-writes'; rate: number };
}

export interface Simulation {
  history: Operation[];
  /** Operations refused, left out of the history. */
  refused: number;
  /** Times the planted bug showed: reads served a value the leader no longer had, writes dropped. */
  bugged: number;
  /** The values of the writes dropped by the `lost-writes` bug. */
  dropped: Value[];
}

export function simulate(options: SimulationOptions): Simulation {
  const random = seededRandom(options.seed);
  const uniform = () => random() / 2 ** 32;
  const pick = (n: number) => Math.floor(uniform() * n);
  const unknownRate = options.unknownRate ?? 0.03;
  const refusalRate = options.refusalRate ?? 0.01;
  const timeout = 50;
  const delay = () => 0.5 + uniform() * 6;

  // The event queue: a binary heap ordered by time, then by insertion.
  const heap: { time: number; seq: number; run: () => void }[] = [];
  let seq = 0;
  let now = 0;
  const at = (time: number, run: () => void) => {
    heap.push({ time, seq: seq++, run });
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (before(heap[parent]!, heap[i]!)) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  };
  const take = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  };

  // The store: the leader's registers, and for the stale-reads bug a replica lagging behind.
  const leader = new Map<string, Value>();
  const replica = new Map<string, Value>();
  const log: { key: string; value: Value }[] = [];
  let replicated = 0;
  let bugged = 0;
  const dropped: Value[] = [];
  const bug = options.bug;
  const set = (key: string, value: Value) => {
    leader.set(key, value);
    if (bug?.kind !== 'stale-reads') return;
    log.push({ key, value });
    for (; replicated < log.length - bug.lag; replicated++)
      replica.set(log[replicated]!.key, log[replicated]!.value);
  };
  const apply = (key: string, request: Request): Value | boolean | undefined => {
    const current = leader.get(key) ?? null;
    switch (request.op) {
      case 'read': {
        if (bug?.kind !== 'stale-reads') return current;
        const served = replica.get(key) ?? null;
        if (served !== current) bugged++;
        return served;
      }
      case 'write':
        if (bug?.kind === 'lost-writes' && uniform() < bug.rate) {
          bugged++;
          dropped.push(request.value);
        } else set(key, request.value);
        return undefined;
      case 'cas':
        if (current !== request.expect) return false;
        set(key, request.value);
        return true;
    }
  };

  const recorder = new Recorder({ clock: () => now });
  let invoked = 0;
  let refused = 0;
  const client = (id: number) => {
    const lastSeen = new Map<string, Value>();
    let written = 0;
    const next = () => {
      if (invoked >= options.operations) return;
      invoked++;
      const key = `k${pick(options.keys)}`;
      const value = `${id}.${++written}`;
      const roll = uniform();
      const request: Request =
        roll < 0.5
          ? { op: 'read' }
          : roll < 0.8
            ? { op: 'write', value }
            : { op: 'cas', expect: lastSeen.get(key) ?? null, value };
      const done = record(recorder, id, key, request);
      const finish = (then: () => void) => (time: number) =>
        at(time, () => {
          then();
          at(now + uniform() * 3, next);
        });
      const fate = uniform();
      const sent = now;
      if (fate < refusalRate) {
        finish(() => {
          refused++;
          done.fail();
        })(sent + 2 * delay());
      } else if (fate < refusalRate + unknownRate) {
        // Lost on the way there, lost on the way back, or applied after the client gave up.
        const how = pick(3);
        if (how === 1) at(sent + delay(), () => apply(key, request));
        if (how === 2) at(sent + timeout + uniform() * 200, () => apply(key, request));
        finish(() => done.unknown())(sent + timeout);
      } else {
        at(sent + delay(), () => {
          const output = apply(key, request);
          finish(() => {
            if (request.op === 'read') lastSeen.set(key, output as Value);
            if (request.op !== 'read') lastSeen.set(key, output === false ? null : request.value);
            done.ok(output);
          })(now + delay());
        });
      }
    };
    at(uniform(), next);
  };
  for (let id = 1; id <= options.clients; id++) client(id);
  while (heap.length > 0) {
    const event = take();
    now = event.time;
    event.run();
  }
  return { history: recorder.history(), refused, bugged, dropped };
}

type Request = { op: 'read' } | { op: 'write'; value: Value } | { op: 'cas'; expect: Value; value: Value };

/** Records the invocation of `request`, with one way to complete it whatever its kind. */
function record(
  recorder: Recorder,
  id: number,
  key: string,
  request: Request,
): Completion<Value | boolean | undefined> {
  switch (request.op) {
    case 'read': {
      const done = recorder.invoke(id, key, 'read');
      return { ok: (output) => done.ok(output as Value), fail: done.fail, unknown: done.unknown };
    }
    case 'write': {
      const done = recorder.invoke(id, key, 'write', request.value);
      return { ok: () => done.ok(), fail: done.fail, unknown: done.unknown };
    }
    case 'cas': {
      const done = recorder.invoke(id, key, 'cas', { expect: request.expect, value: request.value });
      return { ok: (output) => done.ok(output as boolean), fail: done.fail, unknown: done.unknown };
    }
  }
}

function before(a: { time: number; seq: number }, b: { time: number; seq: number }): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
