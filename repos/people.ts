/**
 * People and devices from the school's directory and MIS exports (migration 018). Where they come
 * from and what they are checked against is directory/'s; this is only the SQL.
 */
import type { Db, Queryable } from '../db/types';

export type PersonSource = 'directory' | 'csv';

export interface PersonRow {
  email: string;
  name: string;
  year_group: string | null;
  form: string | null;
  groups: string[];
  policy_group: string | null;
  disabled: boolean;
  source: PersonSource;
}

export interface PersonInput {
  email: string;
  name: string;
  yearGroup: string | null;
  form: string | null;
  groups: string[];
  policyGroup: string | null;
  disabled: boolean;
}

export interface DeviceInput {
  mac: string | null;
  ip: string | null;
  personEmail: string;
  name: string | null;
}

/**
 * Makes `people` the whole of `source`'s rows: upserts each (an email another source brought is
 * taken over) and deletes that source's rows no longer listed, in one transaction.
 */
export async function replacePeople(db: Db, source: PersonSource, people: PersonInput[]): Promise<{ upserted: number; removed: number }> {
  return db.transaction(async (tx) => {
    // Groups travel as one newline-joined text a row: unnest() would flatten a text[][] instead.
    const upserted = people.length
      ? (
          await tx.query(
            `INSERT INTO people (email, name, year_group, form, groups, policy_group, disabled, source, updated_at)
             SELECT e, n, y, f, CASE WHEN g = '' THEN '{}'::text[] ELSE string_to_array(g, E'\\n') END, p, d, $8, now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[]) AS t(e, n, y, f, g, p, d)
             ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name, year_group = EXCLUDED.year_group, form = EXCLUDED.form,
               groups = EXCLUDED.groups, policy_group = EXCLUDED.policy_group, disabled = EXCLUDED.disabled,
               source = EXCLUDED.source, updated_at = now()`,
            [
              people.map((p) => p.email), people.map((p) => p.name), people.map((p) => p.yearGroup), people.map((p) => p.form),
              people.map((p) => p.groups.join('\n')), people.map((p) => p.policyGroup), people.map((p) => p.disabled), source,
            ],
          )
        ).rowCount
      : 0;
    const removed = (await tx.query(`DELETE FROM people WHERE source = $1 AND NOT (email = ANY($2::text[]))`, [source, people.map((p) => p.email)])).rowCount;
    return { upserted, removed };
  });
}

/** The people among `emails` (lower-cased), for naming them beside incidents. */
export async function peopleByEmail(db: Queryable, emails: string[]): Promise<PersonRow[]> {
  if (emails.length === 0) return [];
  const r = await db.query<PersonRow>(
    `SELECT email, name, year_group, form, groups, policy_group, disabled, source FROM people WHERE email = ANY($1::text[])`,
    [[...new Set(emails.map((e) => e.toLowerCase()))]],
  );
  return r.rows;
}

export async function countPeople(db: Queryable, source: PersonSource): Promise<number> {
  const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM people WHERE source = $1`, [source]);
  return Number(r.rows[0]?.n ?? 0);
}

/** Replaces every device with `devices` (an MIS export is the whole list), in one transaction. */
export async function replaceDevices(db: Db, devices: DeviceInput[]): Promise<number> {
  return db.transaction(async (tx) => {
    await tx.query(`DELETE FROM devices`);
    if (devices.length === 0) return 0;
    const r = await tx.query(
      `INSERT INTO devices (mac, ip, person_email, name) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
      [devices.map((d) => d.mac), devices.map((d) => d.ip), devices.map((d) => d.personEmail), devices.map((d) => d.name)],
    );
    return r.rowCount;
  });
}

/** Each known person's policy group (directory groupMap or the MIS import), by lower-case email. */
export async function peoplePolicyGroups(db: Queryable): Promise<Array<{ email: string; policy_group: string }>> {
  const r = await db.query<{ email: string; policy_group: string }>(
    `SELECT lower(email) AS email, policy_group FROM people WHERE policy_group IS NOT NULL AND NOT disabled`,
  );
  return r.rows;
}

/** Devices with an address, with their person's policy group when the person is known. */
export async function deviceAddresses(db: Queryable): Promise<Array<{ ip: string; person_email: string; name: string | null; policy_group: string | null }>> {
  const r = await db.query<{ ip: string; person_email: string; name: string | null; policy_group: string | null }>(
    `SELECT d.ip, d.person_email, d.name, p.policy_group FROM devices d LEFT JOIN people p ON p.email = d.person_email WHERE d.ip IS NOT NULL ORDER BY d.ip`,
  );
  return r.rows;
}
