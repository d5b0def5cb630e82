/*
 * Exact host, then the longest path prefix on a segment boundary. The lookup walks the
 * request path's own `/` boundaries (bounded by the longest prefix configured for the
 * host) with one map probe each, so its cost does not depend on how many routes exist.
 * No default route: anything unmatched is undefined, and the caller answers 404.
 */

export interface Routable {
  host: string;
  paths: readonly string[];
}

interface HostTable<R> {
  prefixes: Map<string, R>;
  longest: number;
}

export interface Router<R> {
  match(host: string, path: string): R | undefined;
  /** Whether any route serves `host` (wardgate's reserved paths exist on exactly those hosts). */
  hasHost(host: string): boolean;
}

export function createRouter<R extends Routable>(routes: readonly R[]): Router<R> {
  const hosts = new Map<string, HostTable<R>>();
  for (const route of routes) {
    let table = hosts.get(route.host);
    if (!table) {
      table = { prefixes: new Map(), longest: 1 };
      hosts.set(route.host, table);
    }
    for (const prefix of route.paths) {
      if (table.prefixes.has(prefix)) throw new Error(`duplicate route prefix ${route.host}${prefix}`);
      table.prefixes.set(prefix, route);
      table.longest = Math.max(table.longest, prefix.length);
    }
  }

  return {
    hasHost: (host) => hosts.has(host),
    match(host, path) {
      const table = hosts.get(host);
      if (!table) return undefined;
      let end = path.length;
      if (end > table.longest) {
        // No prefix is longer than `longest`: start at the last boundary within reach.
        end = path.lastIndexOf('/', table.longest);
        if (end === 0) end = 1;
      }
      for (;;) {
        const hit = table.prefixes.get(end === path.length ? path : path.slice(0, end));
        if (hit) return hit;
        if (end <= 1) return undefined;
        const cut = path.lastIndexOf('/', end - 1);
        end = cut <= 0 ? 1 : cut;
      }
    },
  };
}
