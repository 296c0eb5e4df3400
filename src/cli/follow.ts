/**
 * Following a rollout, a stop or a node drain from the CLI. The judgement is pure (rollout.ts,
 * drain.ts); this file only feeds it with blocking queries on allocations and nodes, so the CLI
 * waits on the server instead of polling it.
 */
import type { Allocation, Job, Node, PlacementFailure } from '../core/types.ts';
import { NotFoundError } from '../core/errors.ts';
import type { Context } from './context.ts';
import { assessDrain, type DrainState } from './drain.ts';
import type { Progress } from './progress.ts';
import { assessRollout, assessStop, type RolloutState } from './rollout.ts';

export type RolloutOutcome =
  | { status: 'succeeded' }
  | { status: 'failed' }
  | { status: 'unplaceable'; failures: Record<string, PlacementFailure> }
  | { status: 'timeout' }
  | { status: 'interrupted' }
  /** The job changed under us (a newer version was submitted, or it was stopped). */
  | { status: 'superseded'; message: string }
  | { status: 'eval-failed'; message: string };

export interface RolloutResult {
  outcome: RolloutOutcome;
  state: RolloutState;
  allocations: Allocation[];
}

/** How long one blocking query waits while the first evaluation may still report placement failures. */
const EVAL_WAIT_MS = 1_000;
const WAIT_MS = 10_000;

/** Runs `fn` unless `signal` aborts first; undefined on abort (the call itself may still finish). */
async function unlessAborted<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort = () => {};
  const abort = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([fn(), abort]);
  } catch (err) {
    if (signal.aborted) return undefined;
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

export async function followRollout(
  ctx: Context,
  submitted: { job: Job; evalId?: string | undefined },
  options: { timeoutMs: number; progress: Progress },
): Promise<RolloutResult> {
  const { job } = submitted;
  const client = ctx.client();
  const signal = ctx.interrupted();
  const deadline = ctx.now() + options.timeoutMs;
  let index = 0;
  let evalPending = submitted.evalId !== undefined;
  let allocations: Allocation[] = [];
  let state = assessRollout(job, allocations);
  const result = (outcome: RolloutOutcome): RolloutResult => ({ outcome, state, allocations });

  for (;;) {
    const remaining = deadline - ctx.now();
    if (remaining <= 0) return result({ status: 'timeout' });
    const waitMs = Math.min(remaining, evalPending ? EVAL_WAIT_MS : WAIT_MS);
    const listed = await unlessAborted(signal, () =>
      client.jobAllocations(
        job.id,
        { namespace: job.namespace, index, waitMs: index === 0 ? 0 : waitMs },
        signal,
      ),
    );
    if (!listed) return result({ status: 'interrupted' });
    index = listed.index;
    allocations = listed.items;
    state = assessRollout(job, allocations);
    options.progress.update(state.line);
    if (state.failed) return result({ status: 'failed' });
    if (state.done) return result({ status: 'succeeded' });

    if (evalPending && submitted.evalId !== undefined) {
      const evalId = submitted.evalId;
      const evaluation = await unlessAborted(signal, () =>
        client.getEvaluation(evalId).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        }),
      );
      if (signal.aborted) return result({ status: 'interrupted' });
      if (evaluation?.status === 'failed')
        return result({
          status: 'eval-failed',
          message: evaluation.statusDescription ?? `evaluation ${evaluation.id} failed`,
        });
      evalPending = evaluation !== undefined && evaluation.status === 'pending';
    }
    // Placement failures are only ours once our evaluation has run (earlier ones may be stale).
    if (!evalPending) {
      const detail = await unlessAborted(signal, () => client.getJob(job.id, { namespace: job.namespace }));
      if (!detail) return result({ status: 'interrupted' });
      if (detail.job.version !== job.version)
        return result({
          status: 'superseded',
          message: `${job.id} was updated to version ${detail.job.version} meanwhile`,
        });
      if (detail.job.stop)
        return result({ status: 'superseded', message: `${job.id} was stopped meanwhile` });
      const failures = Object.fromEntries(
        Object.entries(detail.placementFailures).filter(([, f]) => f.unplaced > 0),
      );
      if (Object.keys(failures).length > 0) return result({ status: 'unplaceable', failures });
    }
  }
}

export type StopOutcome = 'stopped' | 'timeout' | 'interrupted';

/** Waits until no allocation of the job is running or pending. A purged job counts as stopped. */
export async function followStop(
  ctx: Context,
  job: { id: string; namespace: string },
  options: { timeoutMs: number; progress: Progress },
): Promise<StopOutcome> {
  const client = ctx.client();
  const signal = ctx.interrupted();
  const deadline = ctx.now() + options.timeoutMs;
  let index = 0;
  for (;;) {
    const remaining = deadline - ctx.now();
    if (remaining <= 0) return 'timeout';
    let listed;
    try {
      listed = await unlessAborted(signal, () =>
        client.jobAllocations(
          job.id,
          { namespace: job.namespace, index, waitMs: index === 0 ? 0 : Math.min(remaining, WAIT_MS) },
          signal,
        ),
      );
    } catch (err) {
      if (err instanceof NotFoundError) return 'stopped';
      throw err;
    }
    if (!listed) return 'interrupted';
    index = listed.index;
    const state = assessStop(job.id, listed.items);
    options.progress.update(state.line);
    if (state.done) return 'stopped';
  }
}

export type DrainOutcome =
  | { status: 'drained' | 'canceled'; state: DrainState; node: Node }
  | { status: 'interrupted'; state: DrainState | undefined }
  | { status: 'gone' };

/**
 * Follows the drain of `nodeId` until it is over (drained, or canceled by someone) or Ctrl-C. It
 * waits on the node's allocations while some are left, then on the nodes, whose change ends it.
 */
export async function followDrain(
  ctx: Context,
  nodeId: string,
  options: { progress: Progress },
): Promise<DrainOutcome> {
  const client = ctx.client();
  const signal = ctx.interrupted();
  let allocIndex = 0;
  let nodeIndex = 0;
  let state: DrainState | undefined;
  const nodeOf = (items: readonly Node[]) => items.find((n) => n.id === nodeId);
  for (;;) {
    let node: Node | undefined;
    let allocations: Allocation[] | undefined;
    if (state !== undefined && state.left === 0) {
      // Nothing left to move: only the node's own change (the drain ending) is worth waiting for.
      const nodes = await unlessAborted(signal, () =>
        client.listNodes({ index: nodeIndex, waitMs: WAIT_MS }, signal),
      );
      if (!nodes) return { status: 'interrupted', state };
      nodeIndex = nodes.index;
      node = nodeOf(nodes.items);
      allocations = (await unlessAborted(signal, () => client.listAllocations({ node: nodeId, all: true })))
        ?.items;
    } else {
      const listed = await unlessAborted(signal, () =>
        client.listAllocations(
          { node: nodeId, all: true, index: allocIndex, waitMs: allocIndex === 0 ? 0 : WAIT_MS },
          signal,
        ),
      );
      if (!listed) return { status: 'interrupted', state };
      allocIndex = listed.index;
      allocations = listed.items;
      const nodes = await unlessAborted(signal, () => client.listNodes());
      if (nodes) nodeIndex = nodes.index;
      node = nodes && nodeOf(nodes.items);
    }
    if (signal.aborted || allocations === undefined) return { status: 'interrupted', state };
    if (!node) return { status: 'gone' };
    state = assessDrain(node, allocations, ctx.now());
    options.progress.update(state.line);
    if (state.status !== 'draining') return { status: state.status, state, node };
  }
}
