import type { WardgateConfig } from '../../config/schema.js';
import { StartupError } from '../errors.js';
import type { DemoIdp } from './idp.js';

/*
 * The demo's identity provider, registered with exactly what config/demo.yaml tells
 * wardgate: its client, the one redirect URI on the auth host, the post-logout and
 * back-channel logout URIs, and three API clients (client_credentials) for bearer tokens:
 * a SMART app, the cardiology app that the FHIR route keeps away from psychiatric records,
 * and admin-cli, the only one that gets tokens for the admin API. Their secrets are demo values, like the demo's own client secret.
 */

export const DEMO_API_CLIENT = { id: 'smart-demo', secret: 'smart-demo-secret-not-for-production' };
export const DEMO_CARDIOLOGY_CLIENT = { id: 'cardiology-app', secret: 'cardiology-app-secret-not-for-production' };
/** The admin API's caller in the demo: the only client the IdP issues admin tokens to. */
export const DEMO_ADMIN_CLIENT = { id: 'admin-cli', secret: 'admin-cli-secret-not-for-production' };

/**
 * The SMART scopes the demo's FHIR audience grants: what the README's and the tests'
 * token requests ask for (patient/*.read, patient/Observation.read, ...). A requested
 * scope not listed here is dropped from the token, silently, by oidc-provider.
 */
export const DEMO_FHIR_SCOPES: readonly string[] = [
  'patient/*.read',
  ...['Patient', 'Observation', 'MedicationRequest', 'DocumentReference', 'QuestionnaireResponse', 'Questionnaire'].map((type) => `patient/${type}.read`),
];

export async function startDemoIdentity(config: WardgateConfig, log: (msg: string, fields?: object) => void): Promise<DemoIdp> {
  const { startDemoIdp } = await import('./idp.js');
  const { issuer, clientId, clientSecret, authUrl, bearer } = config.identity;
  const audiences = bearer ? (Array.isArray(bearer.audience) ? bearer.audience : [bearer.audience]) : [];
  const admin = config.admin.api?.bearer;
  return startDemoIdp({
    port: Number(issuer.port || 80),
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [new URL('/.wardgate/callback', authUrl).href],
        post_logout_redirect_uris: [new URL('/.wardgate/signed-out', authUrl).href],
        backchannel_logout_uri: new URL('/.wardgate/backchannel-logout', authUrl).href,
        grant_types: ['authorization_code', 'refresh_token'],
      },
      ...[DEMO_API_CLIENT, DEMO_CARDIOLOGY_CLIENT, DEMO_ADMIN_CLIENT].map((client) => ({
        client_id: client.id,
        client_secret: client.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      })),
    ],
    resources: {
      ...Object.fromEntries(audiences.map((audience) => [audience, { scope: DEMO_FHIR_SCOPES.join(' ') }])),
      ...(admin ? { [admin.audience]: { scope: admin.scope, clients: [DEMO_ADMIN_CLIENT.id] } } : {}),
    },
    logger: log,
  }).catch((err: unknown) => {
    // oidc-provider is a development dependency, kept out of the production image.
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new StartupError('the demo needs its IdP (oidc-provider), a development dependency: run it from a checkout after `npm ci`', { cause: err });
  });
}
