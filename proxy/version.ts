import { createRequire } from 'node:module';

// Read once at start from package.json so build_info and --version never disagree with it.
const require = createRequire(import.meta.url);
const pkg = findPackage();

function findPackage(): { version: string } {
  for (const candidate of ['../package.json', '../../package.json']) {
    try {
      const found = require(candidate) as { name?: string; version?: string };
      if (found.name === 'wardgate' && typeof found.version === 'string') return { version: found.version };
    } catch {
      // Not at this depth: the source tree and dist/ sit at different depths.
    }
  }
  return { version: '0.0.0' };
}

export const VERSION = pkg.version;
