import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log';
import { startSmtp } from '../../harness/smtp';
import { harness, type Harness } from './helpers';

/** Reads server-sent events from the live console stream. */
async function openEvents(base: string, cookie: string) {
  const ctl = new AbortController();
  const res = await fetch(`${base}/api/events`, { headers: { cookie }, signal: ctl.signal });
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const pump = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.+)$/m.exec(block)?.[1];
          const data = /^data: (.+)$/m.exec(block)?.[1];
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
        }
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  return { res, events, close: async () => { ctl.abort(); await pump; } };
}

async function until<T>(f: () => T | undefined, ms = 5000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('high-severity alerts: email to the DSL and live events in the console', () => {
  let h: Harness;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let base: string;
  let smtpOpen = false;
  // The app's real logger (pino, with its redaction), writing into this array instead of stderr.
  const logLines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logLines.push(JSON.parse(line));
      done();
    },
  });

  beforeAll(async () => {
    smtp = await startSmtp();
    smtpOpen = true;
    h = await harness({ logger: createLogger({ level: 'info', destination: sink }), config: { smtp: { url: `smtp://127.0.0.1:${smtp.port}`, from: 'filter@school.example', to: [] } } });
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await h?.close();
    if (smtpOpen) await new Promise<void>((r) => smtp.server.close(() => r()));
  });

  it('refuses the event stream to roles other than the DSL', async () => {
    for (const role of ['staff', 'network_manager', 'auditor'] as const) {
      const res = await fetch(`${base}/api/events`, { headers: { cookie: h.users[role].cookie } });
      expect(res.status).toBe(403);
    }
    expect((await fetch(`${base}/api/events`)).status).toBe(401);
  });

  it('streams every new incident, alerts on alert-severity ones and emails the DSL once per pupil and category', async () => {
    const stream = await openEvents(base, h.users.safeguarding_lead.cookie);
    try {
      expect(stream.res.status).toBe(200);
      expect(stream.res.headers.get('content-type')).toContain('text/event-stream');

      h.writer.record({ kind: 'blocked', user: 'pupil@school.example', clientIp: '10.1.2.3', url: 'http://games.example/play', host: 'games.example', category: 'games' });
      const games = await until(() => stream.events.find((e) => e.event === 'incident' && e.data.category === 'games'));
      expect(games.data).toMatchObject({ kind: 'blocked', user: 'pupil@school.example', host: 'games.example', status: 'new' });

      // Severity decides, not the category: the gateway set it (tierFor) when it recorded the block.
      h.writer.record({ kind: 'blocked', user: 'pupil@school.example', clientIp: '10.1.2.3', url: 'http://casino.example/', host: 'casino.example', category: 'gambling', severity: 'incident' });
      await until(() => stream.events.find((e) => e.event === 'incident' && e.data.category === 'gambling'));
      h.writer.record({ kind: 'blocked', user: 'pupil@school.example', clientIp: '10.1.2.3', url: 'http://porn.example/secret-path', host: 'porn.example', category: 'adult', severity: 'alert' });
      const alert = await until(() => stream.events.find((e) => e.event === 'alert'));
      // Adult content alerts, and is never called illegal (issue 13).
      expect(alert.data).toMatchObject({ category: 'adult', illegal: false, severity: 'alert', user: 'pupil@school.example' });
      expect(stream.events.filter((e) => e.event === 'alert')).toHaveLength(1); // games raised none

      const mail = await until(() => smtp.mails[0]);
      expect(mail.to).toEqual(['safeguarding_lead@school.example']);
      expect(mail.raw).toMatch(/Subject: \[schoolgate\] Blocked access: Pornography/);
      expect(mail.raw).toContain('pupil@school.example');
      expect(mail.raw).toContain(`/console/#/incidents/${alert.data.id}`);
      expect(mail.raw).toContain('porn.example');
      expect(mail.raw).not.toMatch(/IWF|illegal/i);

      // The same pupil on the same site again: folded into the incident ('repeated'), no second alert.
      h.writer.record({ kind: 'blocked', user: 'PUPIL@school.example', clientIp: '10.1.2.3', url: 'https://www.porn.example/other', host: 'www.porn.example', category: 'adult', severity: 'alert' });
      await h.writer.flush();
      await new Promise((r) => setTimeout(r, 200));
      expect(stream.events.filter((e) => e.event === 'alert')).toHaveLength(1);
      // The same pupil on another site: another incident and alert on screen, but no second email.
      h.writer.record({ kind: 'blocked', user: 'pupil@school.example', clientIp: '10.1.2.3', url: 'http://xxx.example/', host: 'xxx.example', category: 'adult', severity: 'alert' });
      await until(() => (stream.events.filter((e) => e.event === 'alert').length === 2 ? true : undefined));
      // A different pupil does get one.
      h.writer.record({ kind: 'blocked', user: 'other@school.example', clientIp: '10.1.2.4', url: 'http://xxx.example/', host: 'xxx.example', category: 'adult', severity: 'alert' });
      await until(() => smtp.mails[1]);
      // Content illegal to view (IWF-type list): the address never goes into an email.
      h.writer.record({ kind: 'blocked', user: 'third@school.example', clientIp: '10.1.2.5', url: 'http://abuse.example/secret-path', host: 'abuse.example', category: 'iwf', severity: 'alert' });
      const iwf = await until(() => smtp.mails[2]);
      expect(iwf.raw).not.toContain('abuse.example');
      expect(iwf.raw).not.toContain('secret-path');
      await new Promise((r) => setTimeout(r, 200));
      expect(smtp.mails).toHaveLength(3);
      const audit = await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = 'alert_email'");
      expect(audit.rows[0].n).toBe(3);
    } finally {
      await stream.close();
    }
  });

  it('keeps serving when the SMTP server is gone (the alert is logged, nothing crashes)', async () => {
    smtpOpen = false;
    await new Promise<void>((r) => smtp.server.close(() => r()));
    h.writer.record({ kind: 'blocked', user: 'fourth@school.example', url: 'http://porn.example/', host: 'porn.example', category: 'adult', severity: 'alert' });
    await h.writer.flush();
    const line = await until(() => logLines.find((l) => l.msg === 'alert email not sent'));
    expect(line.level).toBe(50); // error: a DSL who was not emailed must be visible in the log
    expect(String(line.err)).toMatch(/ECONNREFUSED|connect/i);
    const res = await fetch(`${base}/api/incidents?user=fourth@school.example`, { headers: { cookie: h.users.safeguarding_lead.cookie } });
    expect(res.status).toBe(200);
    const items = ((await res.json()) as { items: Array<{ id: number }> }).items;
    expect(items).toHaveLength(1);
    expect(line.incident).toBe(items[0].id);
    expect(await fetch(`${base}/healthz`).then((r) => r.status)).toBe(200);
  });

  it('closing the app ends open event streams instead of waiting on them', async () => {
    const stream = await openEvents(base, h.users.safeguarding_lead.cookie);
    expect(stream.res.status).toBe(200);
    const closed = h.app.close().then(() => 'closed');
    const winner = await Promise.race([closed, new Promise((r) => setTimeout(() => r('hung'), 5000))]);
    expect(winner).toBe('closed');
    await stream.close();
  });
});
