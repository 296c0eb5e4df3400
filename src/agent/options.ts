/** Defaults and parsing of the agent's options. */

export const DEFAULT_AGENT_HTTP_ADDR = '127.0.0.1:8687';
export const DEFAULT_PORT_RANGE = { min: 20000, max: 32000 } as const;

/** `127.0.0.1:8687`, `[::1]:0`, `:8687` (all interfaces). */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}
