import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { normaliseMac, parseDevicesCsv, parsePeopleCsv, readCsv } from '../../directory/csv';
import { startSchoolgate } from '../../server/start';
import { commandMissing, need, projectRoot } from '../helpers/parts';
import { loopbackLookup, startOrigin, tmpDir } from '../proxy/helpers';

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('the CSV reader (RFC 4180)', () => {
  it('reads quoted commas, doubled quotes, line breaks inside quotes, CRLF and a byte-order mark, keeping each record\'s first line', () => {
    const text = '\ufeffemail,name\r\n"a@s.test","Jones, Sam"\r\nb@s.test,"Say ""hi"""\n"c@s.test","two\nlines"\nd@s.test,plain\n\n';
    expect(readCsv(text)).toEqual({
      records: [
        { line: 1, fields: ['email', 'name'] },
        { line: 2, fields: ['a@s.test', 'Jones, Sam'] },
        { line: 3, fields: ['b@s.test', 'Say "hi"'] },
        { line: 4, fields: ['c@s.test', 'two\nlines'] },
        { line: 6, fields: ['d@s.test', 'plain'] },
      ],
      problems: [],
    });
  });

  it('names a stray quote and an unclosed quote by line', () => {
    expect(readCsv('a,b\nx,y"z\n"p"q,r\nok,ok\n"never closed,\n').problems).toEqual([
      { line: 2, message: expect.stringContaining('quote inside an unquoted field') },
      { line: 3, message: expect.stringContaining('text after a closing quote') },
      { line: 5, message: 'a quoted field is never closed' },
    ]);
  });
});

describe('MIS exports: people and devices, validated with a report', () => {
  it('takes a people export and names every bad line with what is wrong', () => {
    const { people, problems } = parsePeopleCsv(
      [
        'Email,Name,Year Group,Form,Group',
        'Sam.Jones@school.test,Sam Jones,Year 9,9B,pupils',
        'not-an-email,Ali Khan,Year 9,9C,pupils',
        'jo@school.test,,Staff,,staff',
        'mo@school.test,Mo Price,Year 7,7A,pupils;staff',
        'sam.jones@school.test,Sam Again,Year 9,9B,pupils',
        'lee@school.test,Lee,Year 8',
      ].join('\n'),
    );
    expect(people).toEqual([{ email: 'sam.jones@school.test', name: 'Sam Jones', yearGroup: 'Year 9', form: '9B', groups: [], policyGroup: 'pupils', disabled: false }]);
    expect(problems).toEqual([
      { line: 3, message: 'email "not-an-email" is not an email address' },
      { line: 4, message: 'name is empty' },
      { line: 5, message: 'group "pupils;staff" is not a policy group name (letters, digits, - and _)' },
      { line: 6, message: 'sam.jones@school.test is already on line 2' },
      { line: 7, message: '3 fields where the header has 5; group is empty' },
    ]);
    expect(parsePeopleCsv('mail,full name\nx@y.test,X').problems).toEqual([{ line: 1, message: 'the header has no "group" column (found: "mail", "full name")' }]);
  });

  it('takes a devices export (MAC in any usual spelling, IPv4 or IPv6) and names every bad line', () => {
    expect(['AA-BB-CC-DD-EE-FF', 'aabb.ccdd.eeff', 'aabbccddeeff', 'aa:bb:cc:dd:ee:ff'].map(normaliseMac)).toEqual(Array(4).fill('aa:bb:cc:dd:ee:ff'));
    const { devices, problems } = parseDevicesCsv(
      ['mac,ip,email,name', 'AA-BB-CC-DD-EE-01,10.0.0.5,sam@school.test,LAPTOP-5', ',fd00::7,jo@school.test,', 'zz:bb,10.0.0.6,x@school.test,', ',10.0.0.0/24,y@school.test,', ',10.0.0.5,z@school.test,', ',,q@school.test,'].join('\n'),
    );
    expect(devices).toEqual([
      { mac: 'aa:bb:cc:dd:ee:01', ip: '10.0.0.5', personEmail: 'sam@school.test', name: 'LAPTOP-5' },
      { mac: null, ip: 'fd00::7', personEmail: 'jo@school.test', name: null },
    ]);
    expect(problems).toEqual([
      { line: 4, message: 'mac "zz:bb" is not a MAC address' },
      { line: 5, message: 'ip "10.0.0.0/24" is not an IP address (one address, no range)' },
      { line: 6, message: 'ip 10.0.0.5 is already on line 2' },
      { line: 7, message: 'neither a mac nor an ip' },
    ]);
  });
});

const noCurl = need('curl', commandMissing('curl', 'curl')) !== null;

describe.skipIf(noCurl)('schoolgate people import / devices import, then the gateway names a device\'s person', () => {
  const cli = (dataDir: string, ...args: string[]) =>
    run(process.execPath, ['--import=tsx', path.join(projectRoot, 'bin/schoolgate.ts'), ...args, '--data-dir', dataDir], { cwd: projectRoot }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  it('refuses a file with bad lines (naming each, importing nothing), imports a clean one (alone, and through a running server), and identifies requests from an imported device', async () => {
    const dataDir = tmpDir('sg-import-');
    const lists = tmpDir('sg-import-lists-');
    dirs.push(dataDir, lists);
    const bad = path.join(dataDir, 'bad.csv');
    writeFileSync(bad, 'email,name,year group,form,group\nsam.jones@school.test,Sam Jones,Year 9,9B,pupils\nnobody,No One,Year 9,9C,pupils\n');
    const refused = await cli(dataDir, 'people', 'import', bad);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${bad}:3: email "nobody" is not an email address`);
    expect(refused.stderr).toContain('SG_ERR_IMPORT');

    const people = path.join(dataDir, 'people.csv');
    writeFileSync(people, 'email,name,year group,form,group\nsam.jones@school.test,Sam Jones,Year 9,9B,pupils\njo@school.test,Jo Smith,,,staff\n');
    const devicesCsv = path.join(dataDir, 'devices.csv');
    writeFileSync(devicesCsv, 'mac,ip,email,name\naa:bb:cc:dd:ee:01,127.0.0.5,sam.jones@school.test,LAPTOP-5\n');
    expect(await cli(dataDir, 'people', 'import', people)).toMatchObject({ code: 0, stdout: expect.stringContaining('imported 2 people') });

    mkdirSync(path.join(lists, 'testblock'));
    writeFileSync(path.join(lists, 'testblock', 'domains'), 'blocked.test\n');
    writeFileSync(path.join(lists, 'testblock', 'usage'), 'black\n');
    writeFileSync(path.join(dataDir, 'schoolgate.json'), JSON.stringify({ policyGroups: { pupils: { categories: ['testblock'] }, staff: { categories: [] } }, categories: [], defaultGroup: 'everyone' }));
    const origin = await startOrigin();
    const sg = await startSchoolgate(loadConfig({ 'data-dir': dataDir, lists: [lists], 'proxy-port': '0', 'admin-port': '0' }, {}), {
      logger: silentLogger, out: new Writable({ write: (_c, _e, cb) => cb() }), upstreamLookup: loopbackLookup, allowLoopbackDestinationsForTests: true,
    });
    try {
      // The running server holds the embedded database: the import goes through its control socket.
      expect(await cli(dataDir, 'devices', 'import', devicesCsv)).toMatchObject({ code: 0, stdout: expect.stringContaining('imported 1 devices') });
      await sg.refreshDevices();
      const audit = (await sg.db.query<{ action: string; details: Record<string, unknown> }>(`SELECT action, details FROM audit_log WHERE action LIKE '%_import' ORDER BY id`)).rows;
      expect(audit).toEqual([
        { action: 'people_import', details: { file: people, people: 2, removed: 0 } },
        { action: 'devices_import', details: { file: devicesCsv, devices: 1 } },
      ]);
      const via = async (from: string) =>
        Number((await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', '--interface', from, '-x', `http://127.0.0.1:${sg.proxyPort}`, '-H', 'Sec-Fetch-Dest: document', `http://blocked.test:${origin.httpPort}/`])).stdout);
      // The device's person is a pupil (policy group from the people import): blocked, and named.
      expect(await via('127.0.0.5')).toBe(403);
      // Any other address is nobody in particular, in the default group, which blocks nothing here.
      expect(await via('127.0.0.6')).toBe(200);
      const end = Date.now() + 15_000;
      let row: { user_name: string; device: string; policy_group: string } | undefined;
      while (!row && Date.now() < end) {
        row = (await sg.db.query<{ user_name: string; device: string; policy_group: string }>(`SELECT user_name, device, policy_group FROM incidents WHERE client_ip = '127.0.0.5'`)).rows[0];
        if (!row) await new Promise((r) => setTimeout(r, 100));
      }
      expect(row).toEqual({ user_name: 'sam.jones@school.test', device: 'LAPTOP-5', policy_group: 'pupils' });
    } finally {
      await sg.close();
      await origin.close();
    }
  }, 120_000);
});
