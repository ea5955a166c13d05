import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cruise, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import ts from 'typescript';

// The layering rules of .dependency-cruiser.cjs (README "How it works"), checked on every run so a
// change that crosses a layer fails here, naming each offending import, not in a later review.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = ['bin', 'core', 'blocklists', 'certs', 'proxy', 'filter', 'incidents', 'db', 'repos', 'admin-api', 'server', 'directory', 'harness', 'bench'];

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

// ---------------------------------------------------------------------------------------------
// Where SQL may be written: db/ (the backends, the migrations runner) and repos/ (every query).
// Everything else that ships asks a repository. bench/ and test/ are harnesses: they seed and
// count rows directly, as a person at psql would, and are not scanned.

const SQL_HOMES = new Set(['db', 'repos']);
const SHIPPED = SOURCE.filter((d) => d !== 'bench' && !SQL_HOMES.has(d));

/** A statement as written in code: keywords in capitals, as every query in this codebase is. */
const SQL_STATEMENT = [/\bSELECT\b[\s\S]*?\bFROM\b/, /\bINSERT\s+INTO\b/, /\bUPDATE\s+[a-z_]+(\s+[a-z_]+)?\s+SET\b/, /\bDELETE\s+FROM\b/, /\bpg_notify\s*\(/];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Every string and template literal of a file (comments are not literals) that reads as an SQL statement. */
function sqlLiterals(file: string): Array<{ line: number; text: string }> {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: Array<{ line: number; text: string }> = [];
  const visit = (node: ts.Node) => {
    let text: string | null = null;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) text = node.text;
    else if (ts.isTemplateExpression(node)) text = [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' ');
    if (text !== null && SQL_STATEMENT.some((re) => re.test(text))) {
      found.push({ line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, text: text.replace(/\s+/g, ' ').slice(0, 80) });
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('SQL lives in db/ and repos/ only', () => {
  it('finds the queries where they belong (the scan can see SQL at all)', () => {
    const inRepos = tsFiles(path.join(root, 'repos')).flatMap((f) => sqlLiterals(f));
    expect(inRepos.length).toBeGreaterThan(40);
  });

  it('no shipped .ts file outside db/ and repos/ holds an SQL statement', () => {
    const misplaced = SHIPPED.flatMap((dir) => tsFiles(path.join(root, dir))).flatMap((f) =>
      sqlLiterals(f).map((hit) => `${path.relative(root, f)}:${hit.line}: ${hit.text}`),
    );
    expect(misplaced, 'move these queries into a repos/ module (README, "How it works")').toEqual([]);
  });
});
