/** Starts the control plane: API server, watch-fed cache, and (as leader) broker, scheduler workers, plan applier, controllers. */
import type { Logger } from '../core/log.ts';

export interface ServerOptions {
  /** Server state goes under `<dataDir>/server`. */
  dataDir: string;
  /** host:port to listen on; default 127.0.0.1:8686. Port 0 picks a free one. */
  addr?: string;
  /** Store URL: `sqlite:PATH` (default `sqlite:<dataDir>/server/state.db`) or `memory:`. */
  store?: string;
  logger?: Logger;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8686. */
  addr: string;
  stop(): Promise<void>;
}

export async function startServer(_options: ServerOptions): Promise<RunningServer> {
  throw new Error('server: being built');
}
