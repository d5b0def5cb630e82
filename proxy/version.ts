import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * Where wardgate is installed and which version it is, read from its package.json. The
 * source tree (proxy/) and the build (dist/proxy/) sit at different depths, so walk up.
 */

function findPackageRoot(): { root: string; version: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 4; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'wardgate' && typeof pkg.version === 'string') return { root: dir, version: pkg.version };
    } catch {
      // No package.json at this depth: keep walking up.
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find wardgate package.json above ' + fileURLToPath(import.meta.url));
}

const found = findPackageRoot();
export const PACKAGE_ROOT = found.root;
export const VERSION = found.version;
