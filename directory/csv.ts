import net from 'node:net';
import type { DeviceInput, PersonInput } from '../repos/people';

/**
 * MIS exports of people and devices (issue 15, point 4), for schools whose directory the gateway
 * cannot reach. No CSV parser is among the project's dependencies, so this is a minimal RFC 4180
 * reader: comma-separated fields, double-quoted fields holding commas, quotes ("") and line
 * breaks, CRLF or LF line ends, a UTF-8 byte-order mark (Excel writes one). Each record keeps the
 * line it starts on, so every problem can be named by line number.
 */
export interface CsvRecord {
  line: number;
  fields: string[];
}

export interface Problem {
  line: number;
  message: string;
}

export function readCsv(text: string): { records: CsvRecord[]; problems: Problem[] } {
  const records: CsvRecord[] = [];
  const problems: Problem[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < text.length) {
    const start = line;
    const fields: string[] = [];
    let field = '';
    let broken: string | null = null;
    for (;;) {
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= text.length) {
            broken = 'a quoted field is never closed';
            break;
          }
          if (text[i] === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (text[i] === '\n') line++;
          field += text[i++];
        }
        if (!broken && i < text.length && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          broken = 'text after a closing quote (a quote inside a field must be doubled: "")';
          while (i < text.length && text[i] !== '\n') i++;
        }
      } else {
        while (i < text.length && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          if (text[i] === '"' && !broken) broken = 'a quote inside an unquoted field (quote the whole field and double the quote)';
          field += text[i++];
        }
      }
      fields.push(field);
      field = '';
      if (i < text.length && text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (text[i] === '\r') i++;
    if (text[i] === '\n') i++;
    line++;
    if (broken) problems.push({ line: start, message: broken });
    else if (!(fields.length === 1 && fields[0].trim() === '')) records.push({ line: start, fields });
  }
  return { records, problems };
}

const EMAIL = /^[^\s@,;<>"]+@[^\s@,;<>"]+\.[^\s@,;<>"]+$/;
const GROUP = /^[A-Za-z0-9_-]{1,64}$/;

type Columns<K extends string> = Record<K, number | undefined>;

/** Finds each wanted column by its header name (case, spaces and underscores ignored). */
function columns<K extends string>(header: CsvRecord, wanted: Record<K, string[]>, required: NoInfer<K>[], problems: Problem[]): Columns<K> | null {
  const norm = (s: string) => s.toLowerCase().replace(/[\s_-]+/g, '');
  const names = header.fields.map(norm);
  const out = {} as Columns<K>;
  for (const [k, aliases] of Object.entries(wanted) as Array<[K, string[]]>) {
    const at = names.findIndex((n) => aliases.map(norm).includes(n));
    out[k] = at === -1 ? undefined : at;
  }
  const missing = required.filter((k) => out[k] === undefined);
  if (missing.length) {
    problems.push({ line: header.line, message: `the header has no ${missing.map((m) => `"${wanted[m][0]}"`).join(', ')} column (found: ${header.fields.map((f) => JSON.stringify(f)).join(', ')})` });
    return null;
  }
  return out;
}

const cell = (r: CsvRecord, at: number | undefined) => (at === undefined ? '' : (r.fields[at] ?? '').trim());

/**
 * People: email, name, year group, group (the policy group), and optionally form. Every line is
 * checked; the caller imports nothing unless there are no problems.
 */
export function parsePeopleCsv(text: string): { people: PersonInput[]; problems: Problem[] } {
  const { records, problems } = readCsv(text);
  const people: PersonInput[] = [];
  if (records.length === 0) return { people, problems: [...problems, { line: 1, message: 'the file is empty (a header line and one person a line)' }] };
  const col = columns(records[0], { email: ['email', 'mail', 'email address'], name: ['name', 'full name', 'display name'], yearGroup: ['year group', 'year'], form: ['form', 'reg group', 'registration group', 'tutor group'], group: ['group', 'policy group'] }, ['email', 'name', 'group'], problems);
  if (!col) return { people, problems };
  const seen = new Map<string, number>();
  for (const r of records.slice(1)) {
    const wrong: string[] = [];
    if (r.fields.length !== records[0].fields.length) wrong.push(`${r.fields.length} fields where the header has ${records[0].fields.length}`);
    const email = cell(r, col.email).toLowerCase();
    const name = cell(r, col.name);
    const group = cell(r, col.group);
    if (!EMAIL.test(email)) wrong.push(email ? `email ${JSON.stringify(email)} is not an email address` : 'email is empty');
    if (!name) wrong.push('name is empty');
    if (!GROUP.test(group)) wrong.push(group ? `group ${JSON.stringify(group)} is not a policy group name (letters, digits, - and _)` : 'group is empty');
    const earlier = seen.get(email);
    if (email && earlier !== undefined) wrong.push(`${email} is already on line ${earlier}`);
    if (wrong.length) {
      problems.push({ line: r.line, message: wrong.join('; ') });
      continue;
    }
    seen.set(email, r.line);
    people.push({ email, name, yearGroup: cell(r, col.yearGroup) || null, form: cell(r, col.form) || null, groups: [], policyGroup: group, disabled: false });
  }
  return { people, problems };
}

/** A MAC in any of the usual spellings (aa:bb.., AA-BB-.., aabb.ccdd.eeff, aabbccddeeff) as aa:bb:cc:dd:ee:ff, or null. */
export function normaliseMac(s: string): string | null {
  const hex = s.toLowerCase().replace(/[:.-]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex) || !/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$|^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$|^[0-9a-f]{12}$/.test(s.toLowerCase())) return null;
  return hex.match(/../g)!.join(':');
}

/** Devices: mac and/or ip, the person's email, optionally a device name. */
export function parseDevicesCsv(text: string): { devices: DeviceInput[]; problems: Problem[] } {
  const { records, problems } = readCsv(text);
  const devices: DeviceInput[] = [];
  if (records.length === 0) return { devices, problems: [...problems, { line: 1, message: 'the file is empty (a header line and one device a line)' }] };
  const col = columns(records[0], { email: ['email', 'person', 'user', 'mail'], mac: ['mac', 'mac address'], ip: ['ip', 'ip address', 'address'], name: ['name', 'device', 'device name', 'hostname'] }, ['email'], problems);
  if (!col) return { devices, problems };
  if (col.mac === undefined && col.ip === undefined) {
    problems.push({ line: records[0].line, message: 'the header has neither a "mac" nor an "ip" column' });
    return { devices, problems };
  }
  const seenIp = new Map<string, number>();
  const seenMac = new Map<string, number>();
  for (const r of records.slice(1)) {
    const wrong: string[] = [];
    if (r.fields.length !== records[0].fields.length) wrong.push(`${r.fields.length} fields where the header has ${records[0].fields.length}`);
    const email = cell(r, col.email).toLowerCase();
    const macText = cell(r, col.mac);
    const ipText = cell(r, col.ip);
    const mac = macText ? normaliseMac(macText) : null;
    const ip = ipText && net.isIP(ipText) ? ipText.toLowerCase() : null;
    if (!EMAIL.test(email)) wrong.push(email ? `email ${JSON.stringify(email)} is not an email address` : 'email is empty');
    if (macText && !mac) wrong.push(`mac ${JSON.stringify(macText)} is not a MAC address`);
    if (ipText && !ip) wrong.push(`ip ${JSON.stringify(ipText)} is not an IP address (one address, no range)`);
    if (!macText && !ipText) wrong.push('neither a mac nor an ip');
    if (ip && seenIp.has(ip)) wrong.push(`ip ${ip} is already on line ${seenIp.get(ip)}`);
    if (mac && seenMac.has(mac)) wrong.push(`mac ${mac} is already on line ${seenMac.get(mac)}`);
    if (wrong.length) {
      problems.push({ line: r.line, message: wrong.join('; ') });
      continue;
    }
    if (ip) seenIp.set(ip, r.line);
    if (mac) seenMac.set(mac, r.line);
    devices.push({ mac, ip, personEmail: email, name: cell(r, col.name) || null });
  }
  return { devices, problems };
}
