import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AllocStatusUpdate } from '../api/types.ts';
import { NotFoundError, UnavailableError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { deferred, waitFor, type Deferred } from '../testing/wait.ts';
import { StatusReporter } from './reporter.ts';

const update = (allocId: string, clientStatus: AllocStatusUpdate['clientStatus']): AllocStatusUpdate => ({
  allocId,
  clientStatus,
  taskStates: {},
});

void describe('StatusReporter', () => {
  void test('sends the first change at once and coalesces what arrives while a request is in flight', async () => {
    const sent: AllocStatusUpdate[][] = [];
    const replies: Deferred<void>[] = [];
    const reporter = new StatusReporter({
      logger: silentLogger(),
      send: (batch) => {
        sent.push(batch);
        const d = deferred();
        replies.push(d);
        return d.promise;
      },
    });
    reporter.enqueue(update('a', 'pending'));
    assert.equal(sent.length, 1, 'the first update goes out without waiting');
    reporter.enqueue(update('a', 'running'));
    reporter.enqueue(update('b', 'pending'));
    reporter.enqueue(update('b', 'running'));
    reporter.enqueue(update('a', 'complete'));
    assert.equal(sent.length, 1, 'at most one request in flight');
    replies[0]!.resolve();
    await waitFor(() => sent.length === 2);
    assert.deepEqual(
      sent[1]!.map((u) => [u.allocId, u.clientStatus]),
      [
        ['a', 'complete'],
        ['b', 'running'],
      ],
    );
    replies[1]!.resolve();
    await reporter.flush(5_000);
    assert.equal(reporter.backlog, 0);
    reporter.close();
  });

  void test('a failed request is retried without going back over newer state', async () => {
    const sent: AllocStatusUpdate[][] = [];
    const gate = deferred();
    const reporter = new StatusReporter({
      logger: silentLogger(),
      retryMinMs: 5,
      send: async (batch) => {
        sent.push(batch);
        if (sent.length === 1) {
          await gate.promise;
          throw new UnavailableError('server down');
        }
      },
    });
    reporter.enqueue(update('a', 'running'));
    reporter.enqueue(update('b', 'running'));
    // Newer state of "a" arrives while the failing request is in flight.
    reporter.enqueue(update('a', 'failed'));
    gate.resolve();
    await waitFor(() => sent.length === 2 && reporter.backlog === 0);
    await reporter.flush(5_000);
    assert.equal(sent.length, 2);
    const delivered = new Map(sent[1]!.map((u) => [u.allocId, u.clientStatus]));
    assert.equal(delivered.get('a'), 'failed');
    assert.equal(delivered.get('b'), 'running');
    reporter.close();
  });

  void test('NotFoundError asks the agent to register again', async () => {
    let notFound = 0;
    let calls = 0;
    const reporter = new StatusReporter({
      logger: silentLogger(),
      retryMinMs: 5,
      onNotFound: () => notFound++,
      send: () => (++calls === 1 ? Promise.reject(new NotFoundError('node unknown')) : Promise.resolve()),
    });
    reporter.enqueue(update('a', 'running'));
    await waitFor(() => calls === 2);
    assert.equal(notFound, 1);
    reporter.close();
  });
});
