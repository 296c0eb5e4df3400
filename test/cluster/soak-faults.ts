/**
 * The faults of the soak (./soak.ts): each picks a host, breaks it and returns how to heal it. h1 runs
 * the server (and an agent); the other hosts run an agent each.
 */
import type { UnumCluster } from './cluster.ts';
import type { Random } from './soak-random.ts';

export interface Fault {
  name: string;
  /**
   * Whether the host is cut off from the servers for longer than the grace: its allocations are
   * replaced while its own still run, so a service may run more than `count` until the heal settles.
   */
  cutsOff: boolean;
  durationMs(rng: Random): number;
  apply(c: UnumCluster, rng: Random): { host: string; heal: () => Promise<void> };
}

/** Half the default grace (4 s): a pause this short must change nothing. */
const SHORT_PAUSE_MS = 1_900;

const agentHost = (c: UnumCluster, rng: Random) => rng.pick(c.hosts.hosts.slice(1)).name;
const anyHost = (c: UnumCluster, rng: Random) => rng.pick(c.hosts.hosts).name;

export const FAULTS: readonly Fault[] = [
  {
    name: 'kill host',
    cutsOff: false,
    durationMs: (rng) => rng.between(1_000, 8_000),
    apply(c, rng) {
      const host = agentHost(c, rng);
      c.hosts.kill(host);
      return { host, heal: async () => void c.startAgent(host) };
    },
  },
  {
    name: 'kill server host',
    cutsOff: false,
    durationMs: (rng) => rng.between(1_000, 5_000),
    apply(c) {
      c.hosts.kill('h1');
      return {
        host: 'h1',
        heal: async () => {
          c.startServer('h1');
          c.startAgent('h1');
        },
      };
    },
  },
  {
    name: 'kill -9 server',
    cutsOff: false,
    durationMs: (rng) => rng.between(300, 4_000),
    apply(c) {
      c.killServer('h1');
      return { host: 'h1', heal: async () => void c.startServer('h1') };
    },
  },
  {
    name: 'pause server',
    cutsOff: false,
    durationMs: (rng) => rng.between(1_000, 8_000),
    apply(c) {
      c.signalServer('h1', 'SIGSTOP');
      return { host: 'h1', heal: async () => void c.signalServer('h1', 'SIGCONT') };
    },
  },
  {
    name: 'short pause',
    cutsOff: false,
    durationMs: (rng) => rng.between(300, SHORT_PAUSE_MS),
    apply(c, rng) {
      const host = anyHost(c, rng);
      c.hosts.pause(host);
      return { host, heal: async () => c.hosts.resume(host) };
    },
  },
  {
    name: 'long pause',
    cutsOff: true,
    durationMs: (rng) => rng.between(6_000, 12_000),
    apply(c, rng) {
      const host = agentHost(c, rng);
      c.hosts.pause(host);
      return { host, heal: async () => c.hosts.resume(host) };
    },
  },
  {
    name: 'partition',
    cutsOff: true,
    durationMs: (rng) => rng.between(5_000, 15_000),
    apply(c, rng) {
      const host = anyHost(c, rng);
      c.hosts.partition(host);
      return { host, heal: async () => c.hosts.heal(host) };
    },
  },
];
