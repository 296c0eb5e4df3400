/**
 * A `unum server` that serves plain HTTP with node secrets, as `unum up` does, for benchmarks whose
 * simulated nodes register over the API with credentials of their own (bench/heartbeats.ts): with
 * TLS each simulated node would need a certificate and a TLS connection of its own, a cost of the
 * simulator, not of the server's failure detector.
 *
 *   node bench/plain-server.ts --addr 127.0.0.1:PORT --data-dir DIR [unum server's flags]
 *
 * Takes the flags of `unum server` that set its options (connection limits, heartbeats), logs JSON
 * on stderr at `--log-level` (default warn) and stops on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { daemonLogger } from '../src/cli/daemon.ts';
import { parseDuration } from '../src/core/duration.ts';
import { startServer } from '../src/server/index.ts';

const { values } = parseArgs({
  options: {
    addr: { type: 'string', default: '127.0.0.1:8686' },
    'data-dir': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
    'max-connections': { type: 'string' },
    'max-connections-per-source': { type: 'string' },
    'heartbeat-interval': { type: 'string' },
    'heartbeat-grace': { type: 'string' },
    'heartbeat-max-rate': { type: 'string' },
  },
});
const dataDir = values['data-dir'];
if (dataDir === undefined) throw new Error('--data-dir is required');
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const ms = (v: string | undefined) => (v === undefined ? undefined : parseDuration(v));
const defined = <T extends object>(o: T) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };

const server = await startServer({
  dataDir,
  addr: values.addr,
  logger: daemonLogger('unum', values['log-level']),
  limits: defined({
    maxConnections: num(values['max-connections']),
    maxConnectionsPerSource: num(values['max-connections-per-source']),
  }),
  heartbeat: defined({
    intervalMs: ms(values['heartbeat-interval']),
    graceMs: ms(values['heartbeat-grace']),
    maxRate: num(values['heartbeat-max-rate']),
  }),
});
const stop = () => void server.stop().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
