import t from 'tap';
import type { DemoIdp, DemoIdpClient, DemoIdpTtl } from '../../proxy/demo/idp.js';
import { Browser } from './browser.js';
import { API_AUDIENCE, API_CLIENT, TEST_CLIENT, identityYaml, startTestGateway, type TestGateway } from './gateway.js';
import { startTestIdp } from './idp.js';
import { freePort } from './process.js';

/*
 * A real wardgate and a real IdP (the demo's oidc-provider) that know each other: the
 * IdP has wardgate's one redirect URI, its post-logout and back-channel URIs registered
 * on the port wardgate listens on, as an operator would set them up. Browsers are cookie
 * jars speaking real HTTP to both.
 */

export interface SignInRig {
  readonly idp: DemoIdp;
  readonly wg: TestGateway;
  readonly port: number;
  /** `http://<host>:<port><path>` on wardgate. */
  url(host: string, path?: string): string;
  browser(): Browser;
  /** Moves wardgate's clock (sessions, idle and token expiry) forward. */
  advance(ms: number): void;
}

export interface RigOptions {
  routes: string;
  ttl?: DemoIdpTtl;
  /** Extra lines inside the identity block (indented two spaces). */
  identityExtra?: string;
  extraYaml?: string;
  /** wardgate's port, when the caller must know it first. */
  port?: number;
  /** Where the IdP sends back-channel logout tokens, instead of wardgate itself. */
  backchannelUri?: string;
}

/** wardgate's client at the IdP, registered as an operator would, plus an API client. */
export function rigClients(authOrigin: string, backchannelUri = `${authOrigin}/.wardgate/backchannel-logout`): DemoIdpClient[] {
  return [
    {
      client_id: TEST_CLIENT.id,
      client_secret: TEST_CLIENT.secret,
      redirect_uris: [`${authOrigin}/.wardgate/callback`],
      post_logout_redirect_uris: [`${authOrigin}/.wardgate/signed-out`],
      backchannel_logout_uri: backchannelUri,
      grant_types: ['authorization_code', 'refresh_token'],
    },
    { client_id: API_CLIENT.id, client_secret: API_CLIENT.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  ];
}

export async function startSignInRig(options: RigOptions): Promise<SignInRig> {
  const port = options.port ?? await freePort();
  const auth = `http://auth.localhost:${port}`;
  const idp = await startTestIdp({
    clients: rigClients(auth, options.backchannelUri),
    resources: { [API_AUDIENCE]: { scope: 'patient/*.read' } },
    ...(options.ttl ? { ttl: options.ttl } : {}),
  });
  t.teardown(() => idp.close());
  let offset = 0;
  const wg = await startTestGateway(options.routes, options.extraYaml ?? '', {
    port,
    identity: identityYaml(idp.issuer, port, options.identityExtra ?? ''),
    now: () => Date.now() + offset,
  });
  t.teardown(() => wg.close());
  return {
    idp,
    wg,
    port,
    url: (host, path = '/') => `http://${host}:${port}${path}`,
    browser: () => new Browser(),
    advance: (ms) => {
      offset += ms;
    },
  };
}
