import { z } from 'zod';

/*
 * The `risk:` config section: points that signals wardgate sees itself add to a request's
 * risk score (0-100), which `risk` policy rules compare against. Anomaly detection will
 * add its own signals behind the same provider.
 */

const points = z.number({ error: 'expected points from 0 to 100' }).int().min(0).max(100);

export const riskSchema = z.strictObject({
  signals: z.strictObject({
    /** The device is unknown, unmanaged, non-compliant or its posture is stale or forged. */
    deviceUntrusted: points.optional(),
    /** The client's country is unknown (no database entry, or a private address behind no mapping). */
    countryUnknown: points.optional(),
  }),
});

export type RiskConfig = z.output<typeof riskSchema>;
