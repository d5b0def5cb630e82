import type { Exchange } from '../../proxy/exchange.js';
import type { ContextProvider, PartialContext } from '../../proxy/policy/context.js';
import type { RiskConfig } from './config.js';

/*
 * The risk score: 0 unless a signal raises it, capped at 100. Each signal reads what the
 * earlier providers found (device, network), so the score costs a few comparisons.
 */

export interface RiskSignal {
  readonly name: string;
  /** Points this request earns; 0 when the signal sees nothing. */
  score(partial: PartialContext): number;
}

export function configuredSignals(config: RiskConfig | undefined): RiskSignal[] {
  const signals: RiskSignal[] = [];
  const { deviceUntrusted, countryUnknown } = config?.signals ?? {};
  if (deviceUntrusted) signals.push({ name: 'device-untrusted', score: (p) => (p.device && !p.device.trusted ? deviceUntrusted : 0) });
  if (countryUnknown) signals.push({ name: 'country-unknown', score: (p) => (p.network && p.network.country === undefined ? countryUnknown : 0) });
  return signals;
}

/** undefined when there are no signals: every request's risk is then 0 at no cost. */
export function createRiskProvider(signals: readonly RiskSignal[]): ContextProvider<'risk'> | undefined {
  if (signals.length === 0) return undefined;
  return {
    name: 'risk',
    provide(_ex: Exchange, partial: PartialContext): number {
      let total = 0;
      for (const signal of signals) total += signal.score(partial);
      return Math.min(100, total);
    },
  };
}
