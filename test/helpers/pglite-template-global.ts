import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { TestProject } from 'vitest/node';

/**
 * Makes the PGlite cluster test workers copy instead of running initdb (db/db.ts
 * usePgliteTemplateForTests): once per run, in a folder of this user's own (mkdtemp: 0700), so no
 * other local user can put anything into the databases the tests open. Only initdb runs here: the
 * copies are migrated by the code under test, as a new install is.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-pglite-template-'));
  const cluster = path.join(dir, 'pglite');
  const lite = await PGlite.create(cluster);
  await lite.close();
  project.provide('pgliteTemplate', cluster);
  return () => rmSync(dir, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}
