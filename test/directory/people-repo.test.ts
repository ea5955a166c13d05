import { describe, expect, it } from 'vitest';
import { deviceAddresses, peopleByEmail, replaceDevices, replacePeople, type PersonInput } from '../../repos/people';
import { backends, openFresh } from '../incidents/helpers';

const person = (email: string, o: Partial<PersonInput> = {}): PersonInput => ({
  email, name: email.split('@')[0], yearGroup: null, form: null, groups: [], policyGroup: 'pupils', disabled: false, ...o,
});

for (const backend of backends) {
  describe.skipIf(backend.skip !== null)(`people and devices (migration 018) on ${backend.kind}`, () => {
    it('a sync replaces only its own source\'s people; groups round-trip; devices carry their person\'s policy group', async () => {
      const o = await openFresh(backend.kind);
      try {
        await replacePeople(o.db, 'csv', [person('csv.only@s.test', { form: '9B', name: 'Csv Only' }), person('both@s.test')]);
        expect(await replacePeople(o.db, 'directory', [person('dir@s.test', { groups: ['Year 7', 'Choir, Senior'], yearGroup: 'Year 7' }), person('both@s.test', { policyGroup: 'staff' })])).toEqual({ upserted: 2, removed: 0 });
        // The next sync no longer lists dir@: it goes; the CSV's person stays.
        expect(await replacePeople(o.db, 'directory', [person('both@s.test', { policyGroup: 'staff' })])).toEqual({ upserted: 1, removed: 1 });
        const rows = await peopleByEmail(o.db, ['CSV.only@s.test', 'both@s.test', 'dir@s.test']);
        expect(rows.map((r) => [r.email, r.source, r.policy_group]).sort()).toEqual([['both@s.test', 'directory', 'staff'], ['csv.only@s.test', 'csv', 'pupils']]);
        await replacePeople(o.db, 'directory', [person('dir@s.test', { groups: ['Year 7', 'Choir, Senior'] })]);
        expect((await peopleByEmail(o.db, ['dir@s.test']))[0].groups).toEqual(['Year 7', 'Choir, Senior']);

        expect(await replaceDevices(o.db, [{ mac: 'aa:bb:cc:dd:ee:01', ip: '10.0.0.5', personEmail: 'csv.only@s.test', name: 'LAPTOP-5' }, { mac: 'aa:bb:cc:dd:ee:02', ip: null, personEmail: 'x@s.test', name: null }])).toBe(2);
        expect(await deviceAddresses(o.db)).toEqual([{ ip: '10.0.0.5', person_email: 'csv.only@s.test', name: 'LAPTOP-5', policy_group: 'pupils' }]);
        expect(await replaceDevices(o.db, [])).toBe(0);
        expect(await deviceAddresses(o.db)).toEqual([]);
      } finally {
        await o.cleanup();
      }
    });
  });
}
