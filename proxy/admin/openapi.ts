import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StartupError } from '../errors.js';
import { PACKAGE_ROOT } from '../version.js';

/*
 * The admin API's OpenAPI description, a hand-written file beside this one. It is read
 * from the package root, not from beside the running module: the build (dist/) holds
 * only compiled code, and the image copies the file to the same place under /app, so one
 * path serves the source tree, a built tree and the image alike.
 */

export const OPENAPI_FILE = join(PACKAGE_ROOT, 'proxy', 'admin', 'openapi.json');

/** The document; a missing or broken file stops the start rather than the first call for it. */
export function loadOpenApi(file = OPENAPI_FILE): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StartupError(`cannot read the admin API description ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new StartupError(`${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}
