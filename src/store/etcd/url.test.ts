import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_TIMEOUT_MS, parseEtcdUrl } from './url.ts';

void describe('etcd store URL', () => {
  test('plain members, default port, IPv6', () => {
    assert.deepEqual(parseEtcdUrl('etcd://10.0.0.1:2379,etcd-b,[::1]:22379', {}), {
      endpoints: ['10.0.0.1:2379', 'etcd-b:2379', '[::1]:22379'],
      timeoutMs: DEFAULT_TIMEOUT_MS,
      maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
    });
  });

  test('TLS files, user and password, timeout and request limit', () => {
    const config = parseEtcdUrl(
      'etcds://unum:s%40cret@a:2379,b:2379?ca=/etc/unum/ca.pem&cert=/etc/unum/c.pem&key=/etc/unum/c.key&timeout=2s&max-request-bytes=10485760',
      {},
    );
    assert.deepEqual(config.tls, { ca: '/etc/unum/ca.pem', cert: '/etc/unum/c.pem', key: '/etc/unum/c.key' });
    assert.deepEqual(config.auth, { user: 'unum', password: 's@cret' });
    assert.equal(config.timeoutMs, 2000);
    assert.equal(config.maxRequestBytes, 10_485_760);
    assert.deepEqual(parseEtcdUrl('etcds://a', {}).tls, {}, 'TLS with the system roots');
  });

  test('the password from UNUM_ETCD_PASSWORD when the URL has only a user', () => {
    assert.deepEqual(parseEtcdUrl('etcd://unum@a', { UNUM_ETCD_PASSWORD: 'pw' }).auth, {
      user: 'unum',
      password: 'pw',
    });
  });

  test('mistakes are InvalidError saying what to do, never echoing the password', () => {
    const cases: Array<[string, RegExp]> = [
      ['etcd://', /names no etcd member/],
      ['etcd://a:99999', /out of range/],
      ['etcd://a?ca=/x', /needs TLS: use etcds/],
      ['etcds://a?cert=/c', /cert= and key= together/],
      ['etcd://a?timeout=soon', /timeout= expects a duration/],
      ['etcd://a?max-request-bytes=-1', /max-request-bytes= expects/],
      ['etcd://a?tls=1', /unknown option "tls"/],
      ['etcd://unum@a', /has no password: give USER:PASSWORD@ or set UNUM_ETCD_PASSWORD/],
      ['etcd://unum:hunter2@a b', /HOST\[:PORT\]/],
    ];
    for (const [url, message] of cases) {
      assert.throws(
        () => parseEtcdUrl(url, {}),
        (err) => {
          assert.ok(err instanceof InvalidError, url);
          assert.match(err.message, message);
          assert.doesNotMatch(err.message, /hunter2/);
          return true;
        },
      );
    }
  });
});
