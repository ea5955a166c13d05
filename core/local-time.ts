import { SchoolgateError } from './errors';

/**
 * The school's clock (issue 14 point 3): every time schoolgate shows a person — the block page,
 * alert emails, the CSV export, the console — is in the school's time zone and written as UK
 * schools write dates, day/month/year and 24-hour. Stored times stay UTC instants; only their
 * display and the charts' day boundaries follow the zone.
 */

export const DEFAULT_TIME_ZONE = 'Europe/London';

/** Why `zone` is not a time zone name schoolgate takes, naming `where`; null when it is one. */
export function timeZoneProblem(zone: unknown, where = 'timeZone'): string | null {
  if (typeof zone !== 'string' || !/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(zone)) {
    return `${where}: not a time zone name: ${JSON.stringify(typeof zone === 'string' ? zone.slice(0, 70) : zone)} (use an IANA name such as Europe/London)`;
  }
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
    return null;
  } catch {
    return `${where}: unknown time zone ${JSON.stringify(zone)} (use an IANA name such as Europe/London)`;
  }
}

/**
 * The zone as Intl names it (its canonical IANA spelling), or SG_ERR_CONFIG naming what was given.
 * Only names are taken, not offsets ("+01:00", "UTC+1"): a fixed offset is an hour wrong half the
 * year, and PostgreSQL reads POSIX offsets with the opposite sign to ISO 8601.
 */
export function checkTimeZone(zone: unknown, where = 'timeZone'): string {
  const problem = timeZoneProblem(zone, where);
  if (problem) throw new SchoolgateError('SG_ERR_CONFIG', problem);
  return new Intl.DateTimeFormat('en-GB', { timeZone: zone as string }).resolvedOptions().timeZone;
}

// Intl formatters are costly to build (locale data and all) and cheap to reuse: one per zone and shape.
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(zone: string, shape: 'datetime' | 'long'): Intl.DateTimeFormat {
  const key = `${shape}|${zone}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone,
      day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
      ...(shape === 'long' ? { weekday: 'long', timeZoneName: 'short' } : {}),
    });
    formatters.set(key, f);
  }
  return f;
}

function partsOf(d: Date, zone: string, shape: 'datetime' | 'long'): Record<string, string> {
  const parts: Record<string, string> = {};
  for (const p of formatter(zone, shape).formatToParts(d)) parts[p.type] = p.value;
  return parts;
}

/** `29/03/2026 02:30:00`: the school's wall-clock time, as a spreadsheet in the UK reads it. */
export function localDateTime(at: Date | string | number, zone: string): string {
  const p = partsOf(new Date(at), zone, 'datetime');
  return `${p.day}/${p.month}/${p.year} ${p.hour}:${p.minute}:${p.second}`;
}

/** The school's day at an instant, `YYYY-MM-DD` (for file names and the charts' day keys). */
export function localDay(at: Date | string | number, zone: string): string {
  const p = partsOf(new Date(at), zone, 'datetime');
  return `${p.year}-${p.month}-${p.day}`;
}

/**
 * `Sunday 29/03/2026 02:30:00 BST`: for people reading it (block page, alert emails). The zone's
 * abbreviation tells the two 01:30s of the October change apart.
 */
export function localDateTimeLong(at: Date | string | number, zone: string): string {
  const p = partsOf(new Date(at), zone, 'long');
  return `${p.weekday} ${p.day}/${p.month}/${p.year} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** How far the zone's wall clock is ahead of UTC at `at`, in ms (BST: 3,600,000). */
function offsetAt(at: number, zone: string): number {
  const p = partsOf(new Date(at), zone, 'datetime');
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  return wall - Math.floor(at / 1000) * 1000;
}

/**
 * The instant a day (`YYYY-MM-DD`) starts in the zone: a bare day in a filter or a chart's range
 * means the school's day, 00:00 on its clock, not UTC's. Two passes settle days whose offset
 * changes (29/03 in London starts at 00:00 GMT, its 01:00 BST change comes later).
 */
export function startOfLocalDay(day: string, zone: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) throw new SchoolgateError('SG_ERR_VALIDATION', `not a day (YYYY-MM-DD): ${JSON.stringify(day.slice(0, 40))}`);
  const wall = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  let t = wall - offsetAt(wall, zone);
  t = wall - offsetAt(t, zone);
  return new Date(t);
}
