import t from 'tap';
import { createRouter } from '../../proxy/router.js';

const routes = [
  { id: 'epic', host: 'epic.example', paths: ['/'] },
  { id: 'epic-api', host: 'epic.example', paths: ['/api', '/api/v2/admin'] },
  { id: 'fhir', host: 'fhir.example', paths: ['/fhir'] },
];
const router = createRouter(routes);

t.test('the longest prefix on a segment boundary wins', async (t) => {
  t.equal(router.match('epic.example', '/')?.id, 'epic');
  t.equal(router.match('epic.example', '/index.html')?.id, 'epic');
  t.equal(router.match('epic.example', '/api')?.id, 'epic-api');
  t.equal(router.match('epic.example', '/api/')?.id, 'epic-api');
  t.equal(router.match('epic.example', '/api/v1/x')?.id, 'epic-api');
  t.equal(router.match('epic.example', '/apix')?.id, 'epic', '/apix is not under /api');
  t.equal(router.match('epic.example', '/api/v2/admin/users')?.id, 'epic-api');
});

t.test('no match is undefined: no default route, no open proxying', async (t) => {
  t.equal(router.match('other.example', '/'), undefined, 'unknown host');
  t.equal(router.match('fhir.example', '/'), undefined, 'known host, path outside every prefix');
  t.equal(router.match('fhir.example', '/fhirx'), undefined, 'prefix must end on a segment boundary');
  t.equal(router.match('fhir.example', '/fhir/Patient/1')?.id, 'fhir');
});

t.test('a path far longer than any prefix still resolves by boundaries', async (t) => {
  const deep = `/api/${'a/'.repeat(5000)}x`;
  t.equal(router.match('epic.example', deep)?.id, 'epic-api');
  t.equal(router.match('fhir.example', `/${'b'.repeat(10000)}`), undefined);
});

t.test('duplicate prefixes are refused', async (t) => {
  t.throws(() => createRouter([{ host: 'a', paths: ['/x'] }, { host: 'a', paths: ['/x'] }]), /duplicate/);
});
