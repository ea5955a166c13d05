import { readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { projectRoot } from './helpers/parts';

// `npm ci` on the Node the project declares must not warn EBADENGINE: a package that wants a newer
// Node may use an API this one lacks, and fail only on the code path that calls it (cookie@2 and
// content-disposition@3 did, behind @fastify/cookie, light-my-request and @fastify/static).
describe('dependencies', () => {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(path.join(projectRoot, 'package-lock.json'), 'utf8'));

  it('each one installed supports the oldest Node the project declares', () => {
    const oldest = semver.minVersion(pkg.engines.node)!.version;
    const misfits: string[] = [];
    for (const [where, entry] of Object.entries<{ version?: string; engines?: unknown; optional?: boolean }>(lock.packages)) {
      const node = (entry.engines as { node?: unknown } | undefined)?.node;
      if (where === '' || typeof node !== 'string') continue;
      if (!semver.satisfies(oldest, node)) misfits.push(`${where}@${entry.version} wants node ${node}`);
    }
    expect(misfits, `declared engines.node ${pkg.engines.node}`).toEqual([]);
  });

  it('the Node running the tests is one the project declares', () => {
    expect(semver.satisfies(process.versions.node, pkg.engines.node)).toBe(true);
  });
});
