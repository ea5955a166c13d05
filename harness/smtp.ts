import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface Mail {
  to: string[];
  raw: string;
}

/**
 * A real SMTP server on a free loopback port, keeping every message it receives, so that alert
 * emails are tested and counted as a DSL's mail server would see them (no mocked mailer).
 */
export async function startSmtp(): Promise<{ server: SMTPServer; port: number; mails: Mail[]; close: () => Promise<void> }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.server.address() as AddressInfo).port, mails, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A message's Subject header, as an alert's reader sees it first. */
export const subjectOf = (m: Mail): string => /^Subject: (.*)$/m.exec(m.raw)?.[1] ?? '';
