import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertText } from '../../admin-api/alerts';
import { toIncidentJson } from '../../admin-api/present';
import { filterFor } from '../../admin-api/routes/incident-query';
import { localDateTime } from '../../core/local-time';
import { renderBlockPage } from '../../filter/blockpage';
import { csvLines } from '../../incidents/queries';
import { getIncidentByKey } from '../../repos/incidents';
import { backends, openFresh, type Opened } from '../incidents/helpers';
import { call, harness, type Harness } from './helpers';

/**
 * Local time (issue 14 point 3) across both British clock changes of 2026: on 29 March the clocks
 * go forward at 01:00 UTC (00:30 UTC is 00:30 GMT, 01:30 UTC is 02:30 BST); on 25 October they go
 * back at 01:00 UTC (00:30 UTC and 01:30 UTC are both 01:30 on the wall, BST then GMT). In summer
 * 23:30 UTC is 00:30 the next day at school. The block page, the CSV, the charts' days and alert
 * emails all follow the school's clock; the charts count incidents as the queue lists them.
 */
const UTC = (s: string) => new Date(`${s}Z`);
const SPRING_GMT = UTC('2026-03-29T00:30:00');
const SPRING_BST = UTC('2026-03-29T01:30:00');
const AUTUMN_BST = UTC('2026-10-25T00:30:00');
const AUTUMN_GMT = UTC('2026-10-25T01:30:00');
const AUTUMN_EVE = UTC('2026-10-24T23:30:00'); // 00:30 BST on the 25th
const SUMMER_LATE = UTC('2026-07-14T23:30:00'); // 00:30 BST on the 15th
const SUMMER_EVENING = UTC('2026-07-14T22:30:00'); // 23:30 BST on the 14th

describe('block page on the school clock', () => {
  const page = (at: Date, timeZone?: string) =>
    renderBlockPage({ url: 'http://casino.example/', host: 'casino.example', categoryName: 'Gambling', at, timeZone, reference: 'r', token: 't', reportAction: 'http://x/block/report' });

  it('shows the wall-clock time either side of both changes, with the zone that tells the two 01:30s apart', () => {
    expect(page(SPRING_GMT, 'Europe/London')).toContain('Sunday 29/03/2026 00:30:00 GMT');
    expect(page(SPRING_BST, 'Europe/London')).toContain('Sunday 29/03/2026 02:30:00 BST');
    expect(page(AUTUMN_BST, 'Europe/London')).toContain('Sunday 25/10/2026 01:30:00 BST');
    expect(page(AUTUMN_GMT, 'Europe/London')).toContain('Sunday 25/10/2026 01:30:00 GMT');
    expect(page(SUMMER_LATE)).toContain('Wednesday 15/07/2026 00:30:00 BST'); // Europe/London by default
    // The machine-readable time stays the instant itself.
    expect(page(SPRING_BST)).toContain('datetime="2026-03-29T01:30:00.000Z"');
    expect(page(SUMMER_LATE, 'Asia/Kolkata')).toContain('Wednesday 15/07/2026 05:00:00 GMT+5:30');
  });
});

for (const backend of backends) {
  describe.skipIf(backend.skip !== null)(`local time through the API on ${backend.kind}`, () => {
    let o: Opened;
    let h: Harness;
    const keys: Record<string, string> = {};
    const MAILS: Array<{ to: string[]; subject: string; text: string }> = [];

    beforeAll(async () => {
      o = await openFresh(backend.kind);
      h = await harness({ db: o.db, config: { timeZone: 'Europe/London' }, mailer: { sendMail: async (m) => void MAILS.push(m) } });
      const rec = (name: string, at: Date, extra: Record<string, unknown> = {}) => {
        keys[name] = h.writer.record({
          kind: 'blocked', occurredAt: at, user: `${name}@school.example`, clientIp: '10.0.0.9', url: `http://${name}.casino.example/`,
          host: `${name}.casino.example`, category: 'gambling', policyGroup: 'pupils', ...extra,
        });
      };
      rec('springgmt', SPRING_GMT);
      rec('springbst', SPRING_BST, { severity: 'alert' });
      rec('autumnbst', AUTUMN_BST);
      rec('autumngmt', AUTUMN_GMT, { severity: 'alert' });
      rec('autumneve', AUTUMN_EVE, { category: 'adult', host: 'porn.example', url: 'http://porn.example/' });
      rec('late', SUMMER_LATE);
      rec('evening', SUMMER_EVENING);
      await h.writer.flush();
      // One pupil going back to one site three times in ten minutes: one incident of three attempts.
      for (const min of [0, 5, 10]) {
        h.writer.record({ kind: 'blocked', occurredAt: new Date(UTC('2026-07-15T08:00:00').getTime() + min * 60_000), user: 'again@school.example', url: `http://xxx.example/${min}`, host: 'xxx.example', category: 'adult' });
        await h.writer.flush();
      }
    });
    afterAll(async () => {
      await h?.close();
      await o?.cleanup();
    });

    const stats = async (qs: string) => {
      const res = await call(h, 'safeguarding_lead', 'GET', `/api/stats?${qs}`);
      expect(res.statusCode, res.body).toBe(200);
      return res.json() as { timeZone: string; perDay: Array<{ day: string; category: string | null; count: number; attempts: number }> };
    };
    const byDay = (perDay: Array<{ day: string; count: number; attempts: number }>) => {
      const out: Record<string, { count: number; attempts: number }> = {};
      for (const r of perDay) {
        out[r.day] ??= { count: 0, attempts: 0 };
        out[r.day].count += r.count;
        out[r.day].attempts += r.attempts;
      }
      return out;
    };

    it("groups the charts' days by the school's day (AT TIME ZONE), by default and across both changes", async () => {
      const summer = await stats('from=2026-07-14&to=2026-07-15');
      expect(summer.timeZone).toBe('Europe/London');
      // 23:30 UTC on 14 July is 00:30 on the 15th at school; 22:30 UTC is still the 14th.
      expect(byDay(summer.perDay)).toEqual({ '2026-07-14': { count: 1, attempts: 1 }, '2026-07-15': { count: 2, attempts: 4 } });
      // Asked in UTC, the same instants fall a day earlier: the zone, not the data, moved them.
      const utc = await stats(`from=${encodeURIComponent('2026-07-14T00:00:00Z')}&to=${encodeURIComponent('2026-07-16T00:00:00Z')}&tz=UTC`);
      expect(byDay(utc.perDay)).toEqual({ '2026-07-14': { count: 2, attempts: 2 }, '2026-07-15': { count: 1, attempts: 3 } });
      const spring = await stats('from=2026-03-28&to=2026-03-29');
      expect(byDay(spring.perDay)).toEqual({ '2026-03-29': { count: 2, attempts: 2 } });
      const autumn = await stats('from=2026-10-24&to=2026-10-25');
      // 23:30 UTC on the 24th is 00:30 BST on the 25th: three incidents that Sunday, none on Saturday.
      expect(byDay(autumn.perDay)).toEqual({ '2026-10-25': { count: 3, attempts: 3 } });
    });

    it("counts incidents as the queue lists them: each day's chart count is the queue's for that day", async () => {
      const s = await stats('from=2026-03-01&to=2026-11-01');
      const days = byDay(s.perDay);
      expect(Object.keys(days).sort()).toEqual(['2026-03-29', '2026-07-14', '2026-07-15', '2026-10-25']);
      for (const [day, want] of Object.entries(days)) {
        const res = await call(h, 'safeguarding_lead', 'GET', `/api/incidents?from=${day}&to=${day}&limit=500`);
        const items = res.json().items as Array<{ count: number }>;
        expect({ day, count: items.length, attempts: items.reduce((a, i) => a + i.count, 0) }).toEqual({ day, ...want });
      }
      // The folded repeats are one incident in the queue and in the chart, three attempts in both.
      const folded = (await call(h, 'safeguarding_lead', 'GET', '/api/incidents?user=again@school.example')).json().items;
      expect(folded.map((i: { count: number }) => i.count)).toEqual([3]);
      const perCategory = (await call(h, 'safeguarding_lead', 'GET', '/api/stats?from=2026-03-01&to=2026-11-01')).json().perCategory;
      expect(perCategory.find((c: { category: string }) => c.category === 'adult')).toMatchObject({ count: 2, attempts: 4 });
    });

    it('exports the CSV in local time (dd/mm/yyyy HH:MM:SS) with outcome, assignee, friendly category name and the DSL notes', async () => {
      const id = (await getIncidentByKey(h.db, keys.late))!.id;
      const dsl = h.users.safeguarding_lead;
      const patch = (body: unknown) => call(h, 'safeguarding_lead', 'PATCH', `/api/incidents/${id}`, body);
      expect((await patch({ status: 'in_review', assigneeId: dsl.id })).statusCode).toBe(200);
      expect((await patch({ note: 'spoke to form tutor, "worried"' })).statusCode).toBe(200);
      expect((await patch({ status: 'closed', note: 'parents informed; no further action' })).statusCode).toBe(200);

      const res = await call(h, 'safeguarding_lead', 'GET', '/api/incidents/export.csv?q=casino.example');
      expect(res.statusCode, res.body).toBe(200);
      const [header, ...rows] = res.body.trim().split(/\r\n(?=")/);
      const columns = header.split(',');
      expect(columns).toEqual([
        'id', 'occurred_at (Europe/London)', 'last_seen (Europe/London)', 'count', 'kind', 'status', 'outcome', 'assignee', 'category', 'category_name',
        'user', 'device', 'client_ip', 'policy_group', 'host', 'url', 'search_terms', 'reporter_note', 'dsl_notes',
      ]);
      const parsed = rows.map((r) => Object.fromEntries([...r.matchAll(/"((?:[^"]|"")*)"/g)].map((m, i) => [columns[i], m[1].replace(/""/g, '"')])));
      const when = (user: string) => parsed.find((r) => r.user === `${user}@school.example`)!['occurred_at (Europe/London)'];
      expect(when('springgmt')).toBe('29/03/2026 00:30:00');
      expect(when('springbst')).toBe('29/03/2026 02:30:00');
      expect(when('autumnbst')).toBe('25/10/2026 01:30:00');
      expect(when('autumngmt')).toBe('25/10/2026 01:30:00');
      expect(when('late')).toBe('15/07/2026 00:30:00');
      expect(when('evening')).toBe('14/07/2026 23:30:00');
      const late = parsed.find((r) => r.user === 'late@school.example')!;
      expect(late).toMatchObject({ status: 'closed', outcome: 'parents informed; no further action', assignee: dsl.email, category: 'gambling', category_name: 'Gambling/Casino games' });
      // Every triage note, dated on the school's clock and signed; the assignment has its own column.
      const notes = late.dsl_notes.split('\n');
      expect(notes).toHaveLength(2);
      expect(notes[0]).toMatch(/^\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}:\d{2} safeguarding_lead@school\.example: spoke to form tutor, "worried"$/);
      expect(notes[1]).toMatch(/ safeguarding_lead@school\.example: parents informed; no further action$/);
      const open = parsed.find((r) => r.user === 'springgmt@school.example')!;
      expect(open).toMatchObject({ status: 'new', outcome: '', assignee: '', dsl_notes: '' });
    });

    it('names categories in the CSV with the friendly-name function it is given', async () => {
      const friendly = (c: string | null) => (c === 'gambling' ? 'Gambling/Casino games' : c);
      const filter = filterFor({ id: 1, email: 'x', role: 'safeguarding_lead', displayName: null } as never, { q: 'springbst' }, 'Europe/London');
      const lines: string[] = [];
      for await (const l of csvLines(h.db, filter, { timeZone: 'Asia/Kolkata', categoryName: friendly })) lines.push(l);
      expect(lines[0]).toContain('occurred_at (Asia/Kolkata)');
      expect(lines).toHaveLength(2);
      expect(lines[1]).toContain('"Gambling/Casino games"');
      expect(lines[1]).toContain('"29/03/2026 07:00:00"'); // 01:30 UTC is 07:00 in India
    });

    it("writes alert emails in the school's time, BST and GMT told apart", async () => {
      await expect.poll(() => MAILS.filter((m) => /springbst|autumngmt/.test(m.subject)).length).toBe(2);
      const text = (user: string) => MAILS.find((m) => m.subject.includes(user))!.text;
      expect(text('springbst')).toContain('Time:     Sunday 29/03/2026 02:30:00 BST');
      expect(text('autumngmt')).toContain('Time:     Sunday 25/10/2026 01:30:00 GMT');
      const row = (await getIncidentByKey(h.db, keys.autumnbst))!;
      expect(alertText(toIncidentJson(row, h.lists, h.config), 'http://x', 'Europe/London').text).toContain('Sunday 25/10/2026 01:30:00 BST');
      expect(localDateTime(row.occurred_at, 'UTC')).toBe('25/10/2026 00:30:00');
    });

    it('serves the zone to the console with the signed-in user', async () => {
      const me = await call(h, 'staff', 'GET', '/api/me');
      expect(me.json()).toMatchObject({ user: { email: 'staff@school.example' }, timeZone: 'Europe/London' });
      const bad = await call(h, 'safeguarding_lead', 'GET', '/api/stats?tz=Mars/Olympus');
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.message).toContain('Mars/Olympus');
    });
  });
}
