import t from 'tap';
import { appendClaimHeaders } from '../../proxy/identity/claim-headers.js';
import type { Identity } from '../../proxy/identity/identity.js';
import { checkStrength } from '../../proxy/identity/strength.js';

/*
 * The pure parts of identity: whether an authentication is strong and recent enough for a
 * route (and what to ask the IdP for if not), and the plain claim headers.
 */

const NOW = 1_800_000_000_000;
const alice = { amr: ['hwk', 'pin'], acr: 'phr', authTime: NOW / 1000 - 60 };
const bob = { amr: ['pwd'], acr: 'pwd', authTime: NOW / 1000 - 60 };

t.test('no requirement: anyone signed in passes', async (t) => {
  t.same(checkStrength(bob, {}, NOW), { ok: true }, 'a password session passes a route that asks for nothing');
});

t.test('acr: one of the listed values', async (t) => {
  t.same(checkStrength(alice, { acr: ['phr', 'phrh'] }, NOW), { ok: true }, 'phr passes [phr, phrh]');
  const weak = checkStrength(bob, { acr: ['phr'] }, NOW);
  t.same(weak, { ok: false, missing: ['acr'], acrValues: ['phr'], maxAgeSeconds: undefined }, 'pwd fails, and the IdP is asked for acr_values phr');
  t.same(checkStrength({ ...alice, acr: undefined }, { acr: ['phr'] }, NOW).ok, false, 'a session without acr fails an acr requirement');
});

t.test('amr: every listed method', async (t) => {
  t.same(checkStrength(alice, { amr: ['hwk'] }, NOW), { ok: true }, 'hwk in [hwk, pin] passes');
  t.same(checkStrength(alice, { amr: ['hwk', 'pin'] }, NOW), { ok: true }, 'all of several listed methods pass');
  t.same(checkStrength(bob, { amr: ['hwk'] }, NOW), { ok: false, missing: ['amr'], acrValues: undefined, maxAgeSeconds: 0 },
    'a missing amr asks for a fresh authentication (max_age 0): there is no standard way to ask for an amr');
  t.same(checkStrength(bob, { amr: ['hwk'], acr: ['phr'] }, NOW), { ok: false, missing: ['acr', 'amr'], acrValues: ['phr'], maxAgeSeconds: undefined },
    'with an acr to ask for, the acr request stands for the amr too');
});

t.test('maxAge: auth_time no older than the limit', async (t) => {
  t.same(checkStrength(alice, { maxAgeMs: 15 * 60_000 }, NOW), { ok: true }, 'a sign-in a minute ago passes 15 minutes');
  t.same(checkStrength(alice, { maxAgeMs: 30_000 }, NOW), { ok: false, missing: ['auth-age'], acrValues: undefined, maxAgeSeconds: 30 },
    'a sign-in a minute ago fails 30 s, and the IdP is asked for max_age=30');
  t.same(checkStrength({ ...alice, authTime: undefined }, { maxAgeMs: 60_000 }, NOW).ok, false, 'no auth_time fails any maxAge: age unknown is not young');
});

t.test('several requirements report everything missing', async (t) => {
  const old = { amr: ['pwd'], acr: 'pwd', authTime: NOW / 1000 - 3600 };
  const check = checkStrength(old, { acr: ['phr'], amr: ['hwk'], maxAgeMs: 900_000 }, NOW);
  t.same(check, { ok: false, missing: ['acr', 'amr', 'auth-age'], acrValues: ['phr'], maxAgeSeconds: 900 }, 'acr, amr and age all named');
});

const identity: Identity = {
  kind: 'session', sub: 'dr.alice', email: 'alice@hospital.example', name: 'Dr Zoë Hart', groups: ['clinicians', 'cardiology'],
  idpSid: 'sid-1', sessionId: 's1', scopes: [], amr: ['hwk', 'pin'], acr: 'phr', authTime: 1, expiresAt: NOW, claims: {},
};

t.test('claim headers carry one claim each, safely', async (t) => {
  const out: string[] = [];
  appendClaimHeaders(out, identity, [['x-user', 'sub'], ['x-email', 'email'], ['x-name', 'name'], ['x-groups', 'groups'], ['x-acr', 'acr'], ['x-amr', 'amr']]);
  t.same(out, [
    'x-user', 'dr.alice',
    'x-email', 'alice@hospital.example',
    'x-name', 'Dr%20Zo%C3%AB%20Hart',
    'x-groups', 'clinicians,cardiology',
    'x-acr', 'phr',
    'x-amr', 'hwk,pin',
  ], 'each claim in its header; a value outside visible ASCII is percent-encoded so it cannot break the header');
  const none: string[] = [];
  appendClaimHeaders(none, { ...identity, email: undefined, groups: [] }, [['x-email', 'email'], ['x-groups', 'groups']]);
  t.same(none, [], 'absent or empty claims add no header at all (never an empty one an upstream might trust)');
  const evil: string[] = [];
  appendClaimHeaders(evil, { ...identity, name: 'x\r\nX-Admin: yes' }, [['x-name', 'name']]);
  t.same(evil, ['x-name', 'x%0D%0AX-Admin%3A%20yes'], 'CR and LF in a claim cannot inject a header');
});
