import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { checkTimeZone, localDateTime, localDateTimeLong, localDay, startOfLocalDay } from '../../core/local-time';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'sg-tz-'));

describe('timeZone setting', () => {
  it('defaults to Europe/London and is taken from the environment or the config file', () => {
    expect(loadConfig({}, {}, tmp()).timeZone).toBe('Europe/London');
    expect(loadConfig({}, { SCHOOLGATE_TIME_ZONE: 'Europe/Dublin' }, tmp()).timeZone).toBe('Europe/Dublin');
    const dir = tmp();
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ timeZone: 'Europe/Jersey' }));
    expect(loadConfig({ 'data-dir': dir }, {}, dir).timeZone).toBe('Europe/Jersey');
    // The environment wins over the file, as for every setting.
    expect(loadConfig({ 'data-dir': dir }, { SCHOOLGATE_TIME_ZONE: 'UTC' }, dir).timeZone).toBe('UTC');
    // Spelled as Intl (and PostgreSQL) name it, whatever the case it was typed in.
    expect(loadConfig({}, { SCHOOLGATE_TIME_ZONE: 'europe/london' }, tmp()).timeZone).toBe('Europe/London');
  });

  it('refuses an unknown zone, naming it and where it came from', () => {
    expect(() => loadConfig({}, { SCHOOLGATE_TIME_ZONE: 'Europe/Londn' }, tmp())).toThrowError(
      expect.objectContaining({ code: 'SG_ERR_CONFIG', message: expect.stringContaining('SCHOOLGATE_TIME_ZONE: unknown time zone "Europe/Londn"') }),
    );
    const dir = tmp();
    const file = path.join(dir, 'schoolgate.json');
    writeFileSync(file, JSON.stringify({ timeZone: 'Mars/Olympus' }));
    expect(() => loadConfig({ 'data-dir': dir }, {}, dir)).toThrowError(
      expect.objectContaining({ code: 'SG_ERR_CONFIG', message: expect.stringMatching(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*timeZone: unknown time zone "Mars/Olympus"`)) }),
    );
    writeFileSync(file, JSON.stringify({ timeZone: 1 }));
    expect(() => loadConfig({ 'data-dir': dir }, {}, dir)).toThrowError(expect.objectContaining({ message: expect.stringContaining('timeZone: not a time zone name: 1') }));
    // Offsets are an hour wrong half the year, and PostgreSQL reads POSIX ones backwards.
    expect(() => checkTimeZone('+01:00')).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    expect(() => checkTimeZone("Europe/London'; DROP TABLE incidents; --")).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
  });
});

describe('local time formats', () => {
  it('writes the school clock across the spring and autumn changes', () => {
    expect(localDateTime(new Date('2026-03-29T00:30:00Z'), 'Europe/London')).toBe('29/03/2026 00:30:00');
    expect(localDateTime(new Date('2026-03-29T01:30:00Z'), 'Europe/London')).toBe('29/03/2026 02:30:00');
    expect(localDateTimeLong(new Date('2026-10-25T00:30:00Z'), 'Europe/London')).toBe('Sunday 25/10/2026 01:30:00 BST');
    expect(localDateTimeLong(new Date('2026-10-25T01:30:00Z'), 'Europe/London')).toBe('Sunday 25/10/2026 01:30:00 GMT');
    expect(localDay(new Date('2026-07-14T23:30:00Z'), 'Europe/London')).toBe('2026-07-15');
  });

  it("starts each day at 00:00 on the school's clock", () => {
    expect(startOfLocalDay('2026-03-29', 'Europe/London').toISOString()).toBe('2026-03-29T00:00:00.000Z');
    expect(startOfLocalDay('2026-03-30', 'Europe/London').toISOString()).toBe('2026-03-29T23:00:00.000Z');
    expect(startOfLocalDay('2026-10-25', 'Europe/London').toISOString()).toBe('2026-10-24T23:00:00.000Z');
    expect(startOfLocalDay('2026-10-26', 'Europe/London').toISOString()).toBe('2026-10-26T00:00:00.000Z');
    expect(startOfLocalDay('2026-07-15', 'Asia/Kolkata').toISOString()).toBe('2026-07-14T18:30:00.000Z');
  });
});
