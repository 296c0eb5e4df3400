import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { silentLogger } from '../core/log.ts';
import { waitFor } from '../testing/wait.ts';
import { BodyBudget, MAX_BODY_BYTES, readJson } from './body.ts';
import { sendError, sendJson } from './errors.ts';
import { listen } from './listen.ts';

test('bodies being read at once share a budget: past it a request gets 503, and the budget comes back', async () => {
  const budget = new BodyBudget(100);
  const l = await listen(
    (req, res) => {
      readJson(req, MAX_BODY_BYTES, budget).then(
        (body) => sendJson(res, 200, { got: body }),
        (err: unknown) => sendError(res, err, silentLogger()),
      );
    },
    { host: '127.0.0.1', port: 0 },
  );
  const body = JSON.stringify({ pad: 'x'.repeat(50) }); // 60 bytes
  const post = (): Promise<Response> =>
    fetch(l.url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const slow = connect({ host: '127.0.0.1', port: l.port });
  try {
    let answer = '';
    slow.setEncoding('utf8');
    slow.on('data', (c: string) => (answer += c));
    slow.write(
      `POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 55)}`,
    );
    await waitFor(() => budget.used === 55, { description: 'the slow body to be half read' });
    const refused = await post();
    assert.equal(refused.status, 503);
    assert.deepEqual(await refused.json(), {
      error: {
        code: 'unavailable',
        message: 'the server is reading too many request bodies at once; retry later',
      },
    });
    slow.write(body.slice(55));
    await waitFor(() => answer.includes('"got"'), { description: 'the slow body to be answered' });
    assert.equal(budget.used, 0);
    assert.equal((await post()).status, 200);
    assert.equal(budget.used, 0);
  } finally {
    slow.destroy();
    await l.close();
  }
});
