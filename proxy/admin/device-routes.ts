import { z } from 'zod';
import { listDevices } from '../../plugins/device/listing.js';
import { clearOverride, listOverrides, setOverride } from '../../plugins/device/overrides.js';
import { freeText } from '../grants/input.js';
import { parseBody } from './body.js';
import { AdminApiError } from './errors.js';
import type { ApiRoute, RouteDeps } from './route.js';
import { deviceOverrideView, deviceView } from './views.js';

/*
 * Devices: what the inventory lists and what administrators have said of them. Marking a
 * device not compliant quarantines it (a laptop reported stolen) until the mark is
 * cleared; marking it compliant vouches for it until its MDM observes it again. Either
 * holds on every process's next request once the answer is sent. A device known only from
 * posture assertions can be marked too: it has no inventory entry to name it by.
 */

const complianceBody = z.strictObject({
  compliant: z.boolean({ error: 'expected compliant: true or false' }),
  reason: freeText('a reason', 1, 2000),
});

export function deviceRoutes({ config, store, inventory, now }: RouteDeps): ApiRoute[] {
  const configured = (): void => {
    if (!config.devices) throw new AdminApiError('devices-not-configured', 'there is no devices: section in the config: wardgate tells no devices apart');
  };
  return [
    {
      method: 'GET',
      path: '/devices',
      action: 'device.list',
      async handle() {
        configured();
        const devices = listDevices({ inventory: inventory(), overrides: await listOverrides(store) });
        return { status: 200, body: { devices: devices.map(deviceView) } };
      },
    },
    {
      method: 'PUT',
      path: '/devices/{id}/compliance',
      action: 'device.set-compliance',
      async handle({ params, actor, body }) {
        configured();
        const { compliant, reason } = parseBody(complianceBody, await body());
        const override = await setOverride(store, params['id']!, { compliant, reason, by: actor.principal.id, at: now() });
        return { status: 200, body: deviceOverrideView(override) };
      },
    },
    {
      method: 'DELETE',
      path: '/devices/{id}/compliance',
      action: 'device.clear-compliance',
      async handle({ params, actor }) {
        configured();
        const id = params['id']!;
        if (!(await clearOverride(store, id, actor.principal.id))) {
          throw new AdminApiError('device-override-not-found', `device ${id} has no compliance override to clear`);
        }
        return { status: 200, body: { deviceId: id, cleared: true } };
      },
    },
  ];
}
