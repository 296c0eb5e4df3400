/**
 * The node's credential, as the agent keeps it, one of two kinds:
 *
 *  - a node certificate (the node joined a TLS server; join.ts keeps it): presented on every call to
 *    the servers, and the agent's own API answers only callers presenting a server certificate of
 *    the same CA. No bearer is sent.
 *  - a secret the cluster issued when the node first registered on a plain listener (`unum up`),
 *    sent on every node route from then on, and the key servers call this agent with (its API
 *    answers nothing else). Kept in `<dataDir>/agent/credential.json`, mode 0600, beside the node
 *    id: the two go together. Before the first registration the agent sends its token, if any.
 */
import { timingSafeEqual } from 'node:crypto';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ForbiddenError, InvalidError, UnauthenticatedError } from '../core/errors.ts';
import { bearer, peerOf, peerProblem, type Authorizer } from '../transport/index.ts';

export interface IssuedCredential {
  secret: string;
  agentKey: string;
}

export class AgentCredential {
  private issued: IssuedCredential | undefined;
  private readonly file: string;
  private readonly joinToken: string | undefined;
  /** The node proves itself by its certificate (TLS): no secret, and servers by theirs. */
  readonly byCertificate: boolean;

  private constructor(
    file: string,
    issued: IssuedCredential | undefined,
    joinToken: string | undefined,
    byCertificate: boolean,
  ) {
    this.file = file;
    this.issued = issued;
    this.joinToken = joinToken;
    this.byCertificate = byCertificate;
  }

  /** A node that joined a TLS server: its certificate is its credential. */
  static certificate(): AgentCredential {
    return new AgentCredential('', undefined, undefined, true);
  }

  /** Reads the credential kept in the data dir, if the node has one. */
  static async load(dataDir: string, nodeId: string, joinToken?: string): Promise<AgentCredential> {
    const file = join(dataDir, 'agent', 'credential.json');
    let issued: IssuedCredential | undefined;
    try {
      const doc = JSON.parse(await readFile(file, 'utf8')) as Partial<IssuedCredential & { nodeId: string }>;
      if (doc.nodeId !== nodeId || typeof doc.secret !== 'string' || typeof doc.agentKey !== 'string')
        throw new InvalidError(
          `${file} is not this node's credential (node ${nodeId}): remove it and the node id beside it to join as a new node`,
        );
      issued = { secret: doc.secret, agentKey: doc.agentKey };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return new AgentCredential(file, issued, joinToken, false);
  }

  /** What node routes are called with: the node's secret, else the join token; nothing over TLS. */
  get bearer(): string | undefined {
    if (this.byCertificate) return undefined;
    return this.issued?.secret ?? this.joinToken;
  }

  get registered(): boolean {
    return this.issued !== undefined;
  }

  /** Keeps a credential the cluster just issued (before it is used: a crash must not lose it). */
  async save(nodeId: string, issued: IssuedCredential): Promise<void> {
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ nodeId, ...issued })}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, this.file);
    this.issued = issued;
  }

  /**
   * The door of the agent's API: only a server gets in, proven by its certificate (TLS) or by this
   * node's agent key.
   */
  authorizer(): Authorizer {
    if (this.byCertificate)
      return {
        authenticate: (req) => {
          const peer = peerOf(req);
          if (peer?.role === 'server') return { name: 'server', kind: 'token' };
          if (peer?.role === 'node')
            throw new ForbiddenError(
              `node ${peer.name} may not call this agent: its API answers only the cluster's servers`,
            );
          throw new UnauthenticatedError(
            `the agent's API answers only the cluster's servers, by their certificate; this request came with ${peerProblem(req) ?? 'no server certificate'}: ask a server (unum logs, unum ps)`,
          );
        },
        authorize: () => undefined,
      };
    return {
      authenticate: (req) => {
        if (req.headers.authorization === undefined) return { name: 'anonymous', kind: 'anonymous' };
        const given = bearer(req) ?? '';
        const key = this.issued?.agentKey;
        if (
          key !== undefined &&
          given.length === key.length &&
          timingSafeEqual(Buffer.from(given), Buffer.from(key))
        )
          return { name: 'server', kind: 'token' };
        throw new UnauthenticatedError("this key is not the agent's: the agent answers only its servers");
      },
      authorize: (identity) => {
        if (identity.kind === 'anonymous')
          throw new UnauthenticatedError(
            "the agent's API answers only the cluster's servers: ask a server (unum logs, unum ps), not the agent",
          );
        if (identity.name !== 'server') throw new ForbiddenError('only servers may call the agent');
      },
    };
  }
}
