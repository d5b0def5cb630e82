import t from 'tap';
import { withoutParams } from '../../proxy/normalize.js';
import { fhirRequestOf, parseFhirRequest, type FhirRequest } from '../../proxy/policy/fhir-request.js';

/*
 * Reading a FHIR REST request from its method and path. Policies rest on this reading, so
 * every shape FHIR defines must come out as the server will take it, and anything else
 * must come out as "not FHIR REST" rather than as a guess.
 */

const BASE = '/fhir';

function fhir(interaction: FhirRequest['interaction'], type: string | undefined, more: Partial<FhirRequest> = {}): FhirRequest {
  return { interaction, type, id: undefined, compartment: undefined, operation: undefined, ...more };
}

t.test('system-level shapes: batch, capabilities, history, search, operations', async (t) => {
  t.same(parseFhirRequest('POST', '/fhir', BASE), fhir('batch', undefined), 'POST [base] is a batch or transaction, about no one type');
  t.same(parseFhirRequest('GET', '/fhir/metadata', BASE), fhir('capabilities', undefined), 'GET [base]/metadata is the capability statement');
  t.same(parseFhirRequest('GET', '/fhir/_history', BASE), fhir('history', '*'), 'GET [base]/_history is history of every type');
  t.same(parseFhirRequest('GET', '/fhir', BASE), fhir('search', '*'), 'GET [base] (with its query) searches every type');
  t.same(parseFhirRequest('POST', '/fhir/_search', BASE), fhir('search', '*'), 'POST [base]/_search searches every type');
  t.same(parseFhirRequest('POST', '/fhir/$export', BASE), fhir('operation', '*', { operation: 'export' }), 'POST [base]/$export is a system operation on every type');
  t.same(parseFhirRequest('GET', '/fhir/$export', BASE), fhir('operation', '*', { operation: 'export' }), 'operations may be invoked with GET too');
});

t.test('type-level shapes: search, create, _search, history, operations', async (t) => {
  t.same(parseFhirRequest('GET', '/fhir/Observation', BASE), fhir('search', 'Observation'), 'GET [type] searches');
  t.same(parseFhirRequest('POST', '/fhir/Observation', BASE), fhir('create', 'Observation'), 'POST [type] creates');
  t.same(parseFhirRequest('POST', '/fhir/Observation/_search', BASE), fhir('search', 'Observation'), 'POST [type]/_search searches');
  t.same(parseFhirRequest('GET', '/fhir/Observation/_search', BASE), fhir('search', 'Observation'), 'GET [type]/_search searches');
  t.same(parseFhirRequest('GET', '/fhir/Observation/_history', BASE), fhir('history', 'Observation'), 'GET [type]/_history is the type\'s history');
  t.same(parseFhirRequest('POST', '/fhir/ValueSet/$expand', BASE), fhir('operation', 'ValueSet', { operation: 'expand' }), '[type]/$op is a type-level operation');
  t.same(parseFhirRequest('GET', '/fhir/CodeSystem/$validate-code', BASE), fhir('operation', 'CodeSystem', { operation: 'validate-code' }), 'operation names may hold hyphens');
});

t.test('instance-level shapes: read, update, patch, delete, history, vread, operations', async (t) => {
  t.same(parseFhirRequest('GET', '/fhir/Patient/123', BASE), fhir('read', 'Patient', { id: '123' }), 'GET [type]/[id] reads');
  t.same(parseFhirRequest('PUT', '/fhir/Patient/123', BASE), fhir('update', 'Patient', { id: '123' }), 'PUT [type]/[id] updates');
  t.same(parseFhirRequest('PATCH', '/fhir/Patient/123', BASE), fhir('patch', 'Patient', { id: '123' }), 'PATCH [type]/[id] patches');
  t.same(parseFhirRequest('DELETE', '/fhir/Patient/123', BASE), fhir('delete', 'Patient', { id: '123' }), 'DELETE [type]/[id] deletes');
  t.same(parseFhirRequest('GET', '/fhir/Patient/123/_history', BASE), fhir('history', 'Patient', { id: '123' }), '[type]/[id]/_history is the instance\'s history');
  t.same(parseFhirRequest('GET', '/fhir/Patient/123/_history/4', BASE), fhir('vread', 'Patient', { id: '123' }), '[type]/[id]/_history/[vid] reads a version');
  t.same(parseFhirRequest('GET', '/fhir/Patient/123/$everything', BASE), fhir('operation', 'Patient', { id: '123', operation: 'everything' }),
    '[type]/[id]/$op is an instance operation, of that type');
  t.same(parseFhirRequest('GET', '/fhir/Patient/a-b.C9', BASE), fhir('read', 'Patient', { id: 'a-b.C9' }), 'ids hold letters, digits, - and .');
});

t.test('compartment searches', async (t) => {
  t.same(parseFhirRequest('GET', '/fhir/Patient/123/Observation', BASE), fhir('search', 'Observation', { compartment: { type: 'Patient', id: '123' } }),
    'Patient/123/Observation searches Observations in the patient\'s compartment');
  t.same(parseFhirRequest('GET', '/fhir/Encounter/e1/*', BASE), fhir('search', '*', { compartment: { type: 'Encounter', id: 'e1' } }),
    'Encounter/e1/* searches every type in the compartment');
  t.same(parseFhirRequest('POST', '/fhir/Practitioner/p1/Appointment/_search', BASE), fhir('search', 'Appointment', { compartment: { type: 'Practitioner', id: 'p1' } }),
    'Practitioner/p1/Appointment/_search searches in the compartment');
  t.same(parseFhirRequest('GET', '/fhir/RelatedPerson/r1/Observation', BASE)?.compartment, { type: 'RelatedPerson', id: 'r1' }, 'RelatedPerson is a compartment');
  t.same(parseFhirRequest('GET', '/fhir/Device/d1/Observation', BASE)?.compartment, { type: 'Device', id: 'd1' }, 'Device is a compartment');
  t.equal(parseFhirRequest('GET', '/fhir/Observation/1/Patient', BASE), undefined, 'Observation is not a compartment type');
  t.equal(parseFhirRequest('POST', '/fhir/Patient/123/Observation', BASE), undefined, 'nothing is created by POSTing into a compartment');
});

t.test('the base: the path must be the base or lie under it', async (t) => {
  t.equal(parseFhirRequest('GET', '/fhirx/Patient/1', BASE), undefined, '/fhirx is not under /fhir');
  t.equal(parseFhirRequest('GET', '/api/Patient/1', BASE), undefined, 'another prefix is not FHIR');
  t.same(parseFhirRequest('GET', '/r4/fhir/Patient/1', '/r4/fhir'), fhir('read', 'Patient', { id: '1' }), 'a deeper base works the same');
  t.same(parseFhirRequest('GET', '/Patient/1', '/'), fhir('read', 'Patient', { id: '1' }), 'base / serves FHIR at the root');
  t.same(parseFhirRequest('POST', '/', '/'), fhir('batch', undefined), 'POST / under base / is a batch');
  t.equal(parseFhirRequest('GET', 'Patient/1', '/'), undefined, 'a path that is not absolute is under no base');
});

t.test('anything else is not FHIR REST: undefined, never a guess', async (t) => {
  const refused: [string, string, string][] = [
    ['GET', '/fhir/', 'a trailing slash makes an empty segment'],
    ['GET', '/fhir/Patient/', 'a trailing slash after a type'],
    ['PUT', '/fhir', 'PUT on the base'],
    ['DELETE', '/fhir/Observation', 'conditional delete: its target is in the query, not seen here'],
    ['PUT', '/fhir/metadata', 'metadata is only read'],
    ['POST', '/fhir/_history', 'history is only read'],
    ['GET', '/fhir/patient/1', 'a resource type starts with an upper-case letter'],
    ['GET', '/fhir/P/1', 'a resource type has at least two letters'],
    ['GET', '/fhir/Pat1ent/1', 'a resource type has only letters'],
    ['GET', `/fhir/${'A'.repeat(65)}/1`, 'a resource type has at most 64 letters'],
    ['GET', '/fhir/Patient/a_b', 'an id has no underscores'],
    ['GET', `/fhir/Patient/${'1'.repeat(65)}`, 'an id has at most 64 characters'],
    ['POST', '/fhir/Patient/1', 'POST to an instance'],
    ['GET', '/fhir/Patient/1/_history/4/extra', 'more than four segments'],
    ['GET', '/fhir/Patient/1/_history/v_1', 'a bad version id'],
    ['PUT', '/fhir/Patient/1/_history/4', 'a version is only read'],
    ['DELETE', '/fhir/Patient/$everything', 'operations are GET or POST'],
    ['GET', '/fhir/Patient/$', 'an operation needs a name'],
    ['GET', '/fhir/Patient/1/$9x', 'an operation name starts with a letter'],
    ['GET', '/fhir/Patient/1/Observation/_history', 'history is not a compartment shape'],
    ['GET', '/fhir/Patient/1/observation', 'a compartment search names a type'],
    ['PUT', '/fhir/Patient/1/_history', 'instance history is only read'],
    ['POST', '/fhir/Patient/1/Observation/extra', 'four segments that are neither vread nor _search'],
    ['GET', '/fhir/_search/x', '_search is not a type'],
    ['GET', '/fhir/Patient/%E0%A4', 'an escape that is not UTF-8'],
    ['OPTIONS', '/fhir/Patient/1', 'an unknown method for the shape'],
    ['PUT', '/fhir/_search', 'a system search is GET or POST'],
    ['PUT', '/fhir/Patient/_search', 'a type search is GET or POST'],
    ['POST', '/fhir/Patient/_history', 'type history is only read'],
    ['GET', '/fhir/Patient/a_b/_history', 'a bad id before _history'],
  ];
  for (const [method, path, why] of refused) t.equal(parseFhirRequest(method, path, BASE), undefined, `${why}: ${method} ${path}`);
});

t.test('read as the server reads it: HEAD, ;params and escapes', async (t) => {
  t.same(parseFhirRequest('HEAD', '/fhir/Patient/1', BASE), fhir('read', 'Patient', { id: '1' }), 'HEAD is read as GET, so rules about reads hold for it');
  // The context carries the path as the router matched it, ;params dropped (withoutParams).
  t.same(parseFhirRequest('GET', withoutParams('/fhir/Patient;x=1/1'), BASE), fhir('read', 'Patient', { id: '1' }), 'a servlet drops ;params, so Patient;x=1 is Patient');
  t.same(parseFhirRequest('GET', withoutParams('/fhir;v=4/Patient/1;y'), BASE), fhir('read', 'Patient', { id: '1' }), ';params on the base and the last segment are dropped too');
  t.same(parseFhirRequest('GET', '/fhir/Patient/1/%24everything', BASE), fhir('operation', 'Patient', { id: '1', operation: 'everything' }),
    '%24everything is decoded to $everything, as the server will');
  t.same(parseFhirRequest('GET', '/fhir/Patient/1/%2A', BASE), fhir('search', '*', { compartment: { type: 'Patient', id: '1' } }), '%2A is *');
  t.equal(parseFhirRequest('GET', '/fhir/Patient/%2F', BASE), undefined, 'a decoded character outside the id alphabet is still refused');
});

t.test('fhirRequestOf remembers the last answer and parses again when anything differs', async (t) => {
  const first = fhirRequestOf('GET', '/fhir/Patient/1', BASE);
  t.equal(fhirRequestOf('GET', '/fhir/Patient/1', BASE), first, 'the same request gives the very same object: no parse, no allocation');
  t.same(fhirRequestOf('DELETE', '/fhir/Patient/1', BASE)?.interaction, 'delete', 'another method is parsed afresh');
  t.same(fhirRequestOf('DELETE', '/fhir/Patient/2', BASE)?.id, '2', 'another path is parsed afresh');
  t.equal(fhirRequestOf('DELETE', '/fhir/Patient/2', '/other'), undefined, 'another base is parsed afresh');
});
