import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { checkSchoolPhrase } from '../../filter/phrase-book';
import { tierFor, TIERS, wantsSupport } from '../../filter/safeguarding';
import { writeAudit } from '../../repos/audit';
import { deletePhraseChange, deletePhraseOff, insertPhraseChange, listPhraseChanges, listPhraseHits, type PhraseChangeRow } from '../../repos/phrases';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, okSchema } from '../present';

/**
 * The safeguarding phrase lists for the DSL (issue 13, point 4): the shipped phrases and the
 * school's own, how often each fired, and the changes, each audited and applied at once on every
 * gateway (admin-api/phrase-sync.ts). The DSL's alone: which phrases fire says what pupils search
 * for, which is need-to-know, so the network manager sees none of it. Counts are per phrase, never
 * per person: who searched is on the incidents, behind their own access and audit.
 */

const DSL = ['safeguarding_lead'] as const;

const nullableString = { type: ['string', 'null'] } as const;

const phraseSchema = {
  type: 'object',
  properties: {
    /** The school's change (an added phrase, or the switch-off of a shipped one), when there is one. */
    id: { type: ['integer', 'null'] },
    text: { type: 'string' },
    source: { type: 'string', enum: ['shipped', 'school'] },
    enabled: { type: 'boolean' },
    reason: { type: 'string' },
    severity: nullableString,
    variants: { type: 'array', items: { type: 'string' } },
    hits: { type: 'integer' },
    lastHit: nullableString,
    changedBy: nullableString,
  },
} as const;

const listSchema = {
  type: 'object',
  properties: {
    category: { type: 'string' },
    label: { type: 'string' },
    severity: { type: 'string' },
    supportBanner: { type: 'boolean' },
    why: { type: 'string' },
    phrases: { type: 'array', items: phraseSchema },
  },
} as const;

const matchSchema = {
  type: 'object',
  properties: {
    category: { type: 'string' },
    label: { type: 'string' },
    phrase: { type: 'string' },
    form: { type: 'string' },
    text: { type: 'string' },
    severity: { type: 'string' },
    supportBanner: { type: 'boolean' },
    reason: { type: 'string' },
  },
} as const;

const lower = (s: string) => s.toLowerCase();

export const phraseRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, phraseSync } = ctx;
  const book = phraseSync.book;

  /** Applies the change here before answering, then tells the other gateways. */
  const applyEverywhere = async () => {
    await phraseSync.apply();
    await phraseSync.notify();
  };

  app.get('/api/phrases', {
    config: { access: DSL },
    schema: {
      tags: ['safeguarding'],
      summary: 'The safeguarding phrase lists: shipped phrases and the school\'s own, with how often each fired',
      response: { 200: { type: 'object', properties: { lists: { type: 'array', items: listSchema } } } },
    },
  }, async () => {
    // This gateway's latest counts first, so the DSL sees the search made a moment ago.
    await phraseSync.flushHits().catch(() => {});
    const [changes, hits] = await Promise.all([listPhraseChanges(db), listPhraseHits(db)]);
    const hitOf = new Map(hits.map((h) => [`${h.category}\u0000${h.phrase}`, h]));
    const counted = (category: string, text: string) => {
      const h = hitOf.get(`${category}\u0000${text}`);
      return { hits: h ? Number(h.hits) : 0, lastHit: h?.last_hit ? new Date(h.last_hit).toISOString() : null };
    };
    return {
      lists: book.shipped.map((list) => {
        const mine = changes.filter((c) => c.category === list.category);
        const offBy = new Map(mine.filter((c) => c.action === 'off').map((c) => [lower(c.phrase), c]));
        return {
          category: list.category, label: list.label, severity: list.severity, supportBanner: list.supportBanner, why: list.why,
          phrases: [
            ...list.phrases.map((p) => {
              const off = offBy.get(lower(p.text));
              return {
                id: off?.id ?? null, text: p.text, source: 'shipped', enabled: !off, reason: off ? off.reason : p.reason, severity: p.severity ?? null,
                variants: [...(p.variants ?? [])], ...counted(list.category, p.text), changedBy: off?.author ?? null,
              };
            }),
            ...mine.filter((c) => c.action === 'add').map((c) => ({
              id: c.id, text: c.phrase, source: 'school', enabled: true, reason: c.reason, severity: c.severity, variants: [], ...counted(list.category, c.phrase), changedBy: c.author,
            })),
          ],
        };
      }),
    };
  });

  app.post<{ Body: { category: string; phrase: string; reason: string; severity?: string } }>('/api/phrases', {
    config: { access: DSL },
    schema: {
      tags: ['safeguarding'],
      summary: 'Add a phrase of the school\'s own to a list; every gateway matches it within seconds',
      body: {
        type: 'object',
        required: ['category', 'phrase', 'reason'],
        properties: {
          category: { type: 'string', minLength: 1, maxLength: 100 },
          phrase: { type: 'string', minLength: 1, maxLength: 200 },
          reason: { type: 'string', minLength: 1, maxLength: 2000 },
          severity: { type: 'string', enum: [...TIERS] },
        },
      },
      response: { 200: { type: 'object', properties: { phrase: phraseSchema } }, 400: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const { category, phrase, severity } = checkSchoolPhrase(book.shipped, req.body);
    const list = book.shipped.find((l) => l.category === category)!;
    if (list.phrases.some((p) => lower(p.text) === lower(phrase))) {
      throw new SchoolgateError('SG_ERR_EXISTS', `phrase: "${phrase}" is a shipped phrase of ${category}; switch it on instead`, { field: 'phrase' });
    }
    let row: PhraseChangeRow;
    try {
      row = await insertPhraseChange(db, { category, phrase, action: 'add', reason: req.body.reason.trim(), severity, authorId: user.id, author: user.email });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_EXISTS', `phrase: "${phrase}" is already on ${category}`, { field: 'phrase' });
      throw err;
    }
    await applyEverywhere();
    await writeAudit(db, { actor: user, action: 'phrase_add', target: `phrase:${row.id}`, details: { category, phrase, severity, reason: row.reason } });
    return {
      phrase: { id: row.id, text: row.phrase, source: 'school', enabled: true, reason: row.reason, severity: row.severity, variants: [], hits: 0, lastHit: null, changedBy: row.author },
    };
  });

  app.patch<{ Body: { category: string; phrase: string; enabled: boolean; reason?: string } }>('/api/phrases/shipped', {
    config: { access: DSL },
    schema: {
      tags: ['safeguarding'],
      summary: 'Switch a shipped phrase off for this school, or back on',
      body: {
        type: 'object',
        required: ['category', 'phrase', 'enabled'],
        properties: {
          category: { type: 'string', minLength: 1, maxLength: 100 },
          phrase: { type: 'string', minLength: 1, maxLength: 200 },
          enabled: { type: 'boolean' },
          reason: { type: 'string', minLength: 1, maxLength: 2000 },
        },
      },
      response: { 200: { type: 'object', properties: { ok: { type: 'boolean' }, changed: { type: 'boolean' } } }, 400: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const list = book.shipped.find((l) => l.category === req.body.category);
    if (!list) throw new SchoolgateError('SG_ERR_VALIDATION', `category: "${req.body.category.slice(0, 100)}" is not a phrase list`, { field: 'category' });
    const shipped = list.phrases.find((p) => lower(p.text) === lower(req.body.phrase.trim()));
    if (!shipped) throw new SchoolgateError('SG_ERR_VALIDATION', `phrase: "${req.body.phrase.slice(0, 200)}" is not a shipped phrase of ${list.category}`, { field: 'phrase' });
    let changed: PhraseChangeRow | null = null;
    if (req.body.enabled) changed = await deletePhraseOff(db, list.category, shipped.text);
    else {
      try {
        changed = await insertPhraseChange(db, {
          category: list.category, phrase: shipped.text, action: 'off', reason: req.body.reason?.trim() || 'switched off in the console', severity: null, authorId: user.id, author: user.email,
        });
      } catch (err) {
        // Already off: nothing to change.
        if ((err as { code?: string }).code !== '23505') throw err;
      }
    }
    if (changed) {
      await applyEverywhere();
      await writeAudit(db, {
        actor: user, action: req.body.enabled ? 'phrase_on' : 'phrase_off', target: `phrase:${changed.id}`,
        details: { category: list.category, phrase: shipped.text, reason: req.body.reason ?? null },
      });
    }
    return { ok: true, changed: changed !== null };
  });

  app.delete<{ Params: { id: number } }>('/api/phrases/:id', {
    config: { access: DSL },
    schema: {
      tags: ['safeguarding'],
      summary: 'Remove a phrase the school added',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      response: { 200: okSchema, 404: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const gone = await deletePhraseChange(db, req.params.id, 'add');
    if (!gone) throw new SchoolgateError('SG_ERR_NOT_FOUND', `school phrase ${req.params.id}`);
    await applyEverywhere();
    await writeAudit(db, { actor: user, action: 'phrase_remove', target: `phrase:${gone.id}`, details: { category: gone.category, phrase: gone.phrase } });
    return { ok: true };
  });

  app.post<{ Body: { text: string } }>('/api/phrases/test', {
    config: { access: DSL },
    schema: {
      tags: ['safeguarding'],
      summary: 'What a search would fire, with the phrases as they are now (nothing is recorded or counted)',
      body: { type: 'object', required: ['text'], properties: { text: { type: 'string', maxLength: 500 } } },
      response: { 200: { type: 'object', properties: { matches: { type: 'array', items: matchSchema }, support: { type: 'boolean' } } } },
    },
  }, async (req) => {
    if (!phraseSync.loaded) await phraseSync.apply();
    const matches = book.matcher.matchAll(req.body.text);
    return {
      matches: matches.map((m) => ({
        category: m.category, label: m.label, phrase: m.phrase, form: m.form, text: m.text,
        severity: m.phraseSeverity ?? tierFor(m.category), supportBanner: m.supportBanner, reason: m.reason,
      })),
      support: wantsSupport(matches),
    };
  });
};
