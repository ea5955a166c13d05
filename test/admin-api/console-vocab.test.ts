// The console is static JavaScript: it takes kinds, statuses, roles and the triage rules from
// /console/vocab.js, which the server writes from its own constants. These tests hold both ends:
// the served module equals the TypeScript, and no console file spells a set again by hand.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../admin-api/auth';
import { consoleDir } from '../../admin-api/console-dir';
import { CLOSING, LINKABLE_KINDS, REOPENED, TRANSITIONS } from '../../incidents/queries';
import { INCIDENT_KINDS, INCIDENT_STATUSES } from '../../incidents/types';
import { harness, type Harness } from './helpers';

describe('/console/vocab.js', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is served with the console and holds the server\'s own sets', async () => {
    const res = await h.app.inject({ url: '/console/vocab.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/javascript/);
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    const mod = await import(`data:text/javascript;base64,${Buffer.from(res.body).toString('base64')}`);
    expect(mod.KINDS).toEqual([...INCIDENT_KINDS]);
    expect(mod.STATUSES).toEqual([...INCIDENT_STATUSES]);
    expect(mod.ROLES).toEqual([...ROLES]);
    expect(mod.NEXT_STATUSES).toEqual(TRANSITIONS);
    expect([...mod.CLOSING]).toEqual([...CLOSING]);
    expect(mod.REOPENED).toBe(REOPENED);
    expect(mod.LINKABLE_KINDS).toEqual([...LINKABLE_KINDS]);
  });
});

describe('the console files', () => {
  const files = readdirSync(consoleDir).filter((f) => f.endsWith('.js'));

  it('quote no kind or status themselves (they import vocab.js)', () => {
    const spelled = new RegExp(`['"\`](${[...INCIDENT_KINDS, ...INCIDENT_STATUSES].join('|')})['"\`]`);
    for (const f of files) {
      const src = readFileSync(path.join(consoleDir, f), 'utf8');
      expect(src.match(spelled)?.[0], f).toBeUndefined();
    }
  });

  it('label every kind, status and role and nothing else', () => {
    // dom.js's label tables are keyed by the values; read their keys as text (dom.js needs a DOM).
    const dom = readFileSync(path.join(consoleDir, 'dom.js'), 'utf8');
    const keys = (name: string) => {
      const body = dom.match(new RegExp(`export const ${name} = \\{([^}]*)\\}`))?.[1] ?? '';
      return [...body.matchAll(/^\s*(\w+):/gm)].map((m) => m[1]);
    };
    expect(keys('KIND_LABELS')).toEqual([...INCIDENT_KINDS]);
    expect(keys('STATUS_LABELS')).toEqual([...INCIDENT_STATUSES]);
    expect(keys('ROLE_LABELS')).toEqual([...ROLES]);
  });
});
