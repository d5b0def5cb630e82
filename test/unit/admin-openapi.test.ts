import { readFileSync } from 'node:fs';
import pino from 'pino';
import t from 'tap';
import { parseConfig } from '../../config/loader.js';
import { createAdminApi } from '../../proxy/admin/api.js';
import { OPENAPI_FILE } from '../../proxy/admin/openapi.js';
import { createAccessServices } from '../../proxy/grants/services.js';
import { MemoryStore } from '../../proxy/store/memory.js';

/*
 * The OpenAPI description is hand-written, so nothing but this test keeps it honest: it
 * must be an OpenAPI 3.1 document, describe exactly the methods and paths the API
 * answers (a route added without its description, or a description left behind by a
 * removed route, fails here), and hold no reference to a component it does not define.
 */

const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as {
  openapi: string;
  info: { title: string; version: string };
  servers: Array<{ url: string }>;
  security: unknown[];
  paths: Record<string, Record<string, { operationId: string; security?: unknown[]; responses: Record<string, unknown>; parameters?: unknown[] }>>;
  components: { securitySchemes: Record<string, { type: string }>; parameters: Record<string, { name: string; in: string }> };
};

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']);

const config = parseConfig(`
listen: { http: 127.0.0.1:8080 }
admin:
  listen: 127.0.0.1:9090
  api: { bearer: { audience: https://wardgate-admin.test } }
workers: 1
store: { type: memory }
identity:
  issuer: http://localhost:8081
  clientId: wardgate
  clientSecret: test-client-secret
  authUrl: http://auth.localhost:8080
grants:
  approvers: { principals: [client:itsm] }
routes:
  - id: app
    host: app.test
    upstream: { url: http://127.0.0.1:9 }
    policy: { allow: [{ authenticated: true }] }
`, 'admin-openapi.yaml');
const store = new MemoryStore({ max: 1_000 });
t.teardown(() => store.close());
const api = createAdminApi({
  config,
  api: config.admin.api!,
  store,
  access: createAccessServices(config, store),
  inventory: () => undefined,
  logger: pino({ level: 'silent' }),
});

t.test('the document is OpenAPI 3.1 with the top-level fields it needs', async (t) => {
  t.match(doc.openapi, /^3\.1\.\d+$/);
  t.ok(doc.info.title, 'info.title');
  t.ok(doc.info.version, 'info.version');
  t.same(doc.servers, [{ url: '/api/v1' }], 'paths are relative to /api/v1, where the API is served');
  t.same(Object.keys(doc.components.securitySchemes).sort(), ['bearer', 'mutualTLS']);
  t.equal(doc.components.securitySchemes['mutualTLS']!.type, 'mutualTLS');
  t.same(doc.security, [{ bearer: [] }, { mutualTLS: [] }], 'either credential, everywhere unless an operation says otherwise');
});

t.test('the document describes every route the API serves, and only those', async (t) => {
  const described = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).filter((key) => METHODS.has(key)).map((method) => `${method.toUpperCase()} ${path}`));
  const served = api.routes.map((route) => `${route.method} ${route.path}`);
  t.same([...described].sort(), [...served].sort());
  t.equal(new Set(served).size, served.length, 'no route is served twice');
});

t.test('every operation is complete: an id, responses, its path parameters, and the refusals of authentication', async (t) => {
  const ids = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const where = `${method.toUpperCase()} ${path}`;
      t.ok(operation.operationId && !ids.has(operation.operationId), `${where}: a unique operationId`);
      ids.add(operation.operationId);
      const statuses = Object.keys(operation.responses);
      t.ok(statuses.some((status) => status.startsWith('2')), `${where}: a success response`);
      const open = Array.isArray(operation.security) && operation.security.length === 0;
      if (!open) t.ok(statuses.includes('401') && statuses.includes('403'), `${where}: 401 and 403 described`);
      const declared = new Set((operation.parameters ?? []).map((parameter) => {
        const name = (parameter as { $ref?: string }).$ref?.split('/').pop();
        const resolved = name ? doc.components.parameters[name] : parameter as { name: string; in: string };
        return resolved?.in === 'path' ? resolved.name : undefined;
      }));
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) t.ok(declared.has(name), `${where}: path parameter ${name} described`);
    }
  }
});

t.test('every $ref points at a component the document defines', async (t) => {
  const text = readFileSync(OPENAPI_FILE, 'utf8');
  const refs = new Set([...text.matchAll(/"\$ref": "#\/([^"]+)"/g)].map((match) => match[1]!));
  t.ok(refs.size > 10);
  for (const ref of refs) {
    let node: unknown = doc;
    for (const part of ref.split('/')) node = (node as Record<string, unknown> | undefined)?.[part];
    t.ok(node !== undefined, `#/${ref} is defined`);
  }
});
