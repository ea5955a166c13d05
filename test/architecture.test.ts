import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cruise, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

// The layering rules of .dependency-cruiser.cjs (README "How it works"), checked on every run so a
// change that crosses a layer fails here, naming each offending import, not in a later review.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = ['bin', 'core', 'blocklists', 'certs', 'proxy', 'filter', 'incidents', 'db', 'admin-api', 'server', 'harness', 'bench'];

const describeViolation = (v: IViolation) =>
  `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle?.length ? ` (cycle: ${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`;

describe('architecture', () => {
  it('keeps the layers: no cycles, proxy/ protocol only, nothing imports server/, bin/, bench/, harness/ or test/, bench/ does not import test/', async () => {
    const options = await extractDepcruiseOptions(path.join(root, '.dependency-cruiser.cjs'));
    const tsConfig = extractTSConfig(path.join(root, 'tsconfig.json'));
    const cwd = process.cwd();
    // Rule paths are relative to the project root, as the CLI sees them.
    process.chdir(root);
    let result: ICruiseResult;
    try {
      result = (await cruise(SOURCE, { ...options, validate: true }, undefined, { tsConfig })).output as ICruiseResult;
    } finally {
      process.chdir(cwd);
    }
    // A cruise that found nothing would pass every rule: make sure it saw the code.
    expect(result.summary.totalCruised).toBeGreaterThan(80);
    expect(result.modules.some((m) => m.source === 'proxy/gateway.ts' && m.dependencies.some((d) => d.resolved === 'proxy/hooks.ts'))).toBe(true);
    // bench/ reaching harness/ is seen, so a bench/ -> test/ import would be too.
    expect(result.modules.some((m) => m.source === 'bench/ingest.ts' && m.dependencies.some((d) => d.resolved === 'harness/relay.ts'))).toBe(true);
    expect(result.summary.violations.map(describeViolation)).toEqual([]);
  });
});
