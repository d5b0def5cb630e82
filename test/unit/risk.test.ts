import t from 'tap';
import type { Exchange } from '../../proxy/exchange.js';
import { UNKNOWN_DEVICE, type PartialContext } from '../../proxy/policy/context.js';
import { riskSchema } from '../../plugins/risk/config.js';
import { configuredSignals, createRiskProvider } from '../../plugins/risk/provider.js';

/*
 * The risk score: 0 without signals (and then no provider runs at all), each configured
 * signal adds its points when it sees what it looks for, and the total stops at 100.
 */

const partial = (over: Partial<PartialContext> = {}): PartialContext => ({
  identity: undefined,
  session: undefined,
  request: { method: 'GET', host: 'epic.test', path: '/' },
  time: 0,
  network: { ip: '10.0.0.1', country: 'GB' },
  device: { ...UNKNOWN_DEVICE, trusted: true, problem: undefined },
  ...over,
});
const ex = {} as Exchange;

t.test('no signals, no provider: every request scores 0 for free', async (t) => {
  t.equal(createRiskProvider(configuredSignals(undefined)), undefined);
  t.equal(createRiskProvider(configuredSignals(riskSchema.parse({ signals: {} }))), undefined);
});

t.test('each signal adds its points when it sees what it looks for', async (t) => {
  const provider = createRiskProvider(configuredSignals(riskSchema.parse({ signals: { deviceUntrusted: 40, countryUnknown: 30 } })))!;
  t.equal(provider.provide(ex, partial()), 0, 'a trusted device in a known country: 0');
  t.equal(provider.provide(ex, partial({ device: UNKNOWN_DEVICE })), 40, 'an untrusted device: its points');
  t.equal(provider.provide(ex, partial({ network: { ip: '10.0.0.1', country: undefined } })), 30, 'an unknown country: its points');
  t.equal(provider.provide(ex, partial({ device: UNKNOWN_DEVICE, network: { ip: '10.0.0.1', country: undefined } })), 70, 'both: the sum');
});

t.test('the score stops at 100, and points outside 0-100 are refused at load', async (t) => {
  const provider = createRiskProvider(configuredSignals(riskSchema.parse({ signals: { deviceUntrusted: 80, countryUnknown: 80 } })))!;
  t.equal(provider.provide(ex, partial({ device: UNKNOWN_DEVICE, network: { ip: '10.0.0.1', country: undefined } })), 100);
  t.notOk(riskSchema.safeParse({ signals: { deviceUntrusted: 101 } }).success);
  t.notOk(riskSchema.safeParse({ signals: { deviceUntrusted: 1.5 } }).success);
  t.notOk(riskSchema.safeParse({ signals: { anomaly: 5 } }).success, 'an unknown signal is refused');
});
