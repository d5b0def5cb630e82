import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { AccessLog } from '../../proxy/access-log.js';

/*
 * The access log writes its lines itself (for speed): each must still be one valid JSON
 * line in pino's shape, whatever a client put in the fields it controls.
 */

function capture(): { lines: string[]; log: AccessLog } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = pino({ level: 'silent', base: { pid: 4242 } }, sink);
  return { lines, log: new AccessLog(logger.child({ kind: 'access' })) };
}

t.test('a line has pino\'s shape: level, time, bindings, fields, msg', async (t) => {
  const { lines, log } = capture();
  log.write({ reqId: 'r1', route: 'epic', method: 'GET', host: 'epic.example', path: '/chart', status: 200, durationMs: 1.5, bytesOut: 10, client: '10.0.0.1', user: 'dr.alice', outcome: 'allow', rule: 'allow[0] clinicians', reason: undefined });
  t.equal(lines.length, 1, 'one write per request, even with the logger\'s own level silent: the access log is its own switch');
  t.ok(lines[0]!.endsWith('\n'), 'newline-terminated');
  const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.match(entry, { level: 30, pid: 4242, kind: 'access', reqId: 'r1', route: 'epic', method: 'GET', host: 'epic.example', path: '/chart', status: 200, durationMs: 1.5, bytesOut: 10, client: '10.0.0.1', user: 'dr.alice', outcome: 'allow', rule: 'allow[0] clinicians', msg: 'request' },
    'every field under its name, with the logger\'s bindings');
  t.type(entry.time, 'number', 'epoch-millisecond time, as pino writes it');
  t.notOk('reason' in entry, 'absent fields are left out, not written as null');
});

t.test('client-controlled values cannot break or forge a line', async (t) => {
  const { lines, log } = capture();
  const evil = '/x"},"status":200,"user":"admin\n{"forged":true}\u2028\\';
  log.write({ reqId: 'r2', route: 'unrouted', method: 'GET', host: 'a"b', path: evil, status: 404, client: '::1', reason: 'no-route' });
  t.equal(lines.length, 1, 'still one line');
  t.equal(lines[0]!.split('\n').length, 2, 'exactly one newline, at the end');
  const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.equal(entry.path, evil, 'the path round-trips exactly');
  t.equal(entry.status, 404, 'and cannot overwrite the status');
  t.notOk('forged' in entry, 'nor add fields');
});
