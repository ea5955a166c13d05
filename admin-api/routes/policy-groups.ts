import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { listPolicyGroups, setPolicyGroup } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema } from '../present';
import { NAME, NM, NM_READ } from './lists';

/** The categories each policy group blocks, as the console sets them (blocklists/policy-groups.ts applies them). */
export const policyGroupRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists, listSync } = ctx;

  const groupSchema = {
    type: 'object',
    properties: { name: { type: 'string' }, categories: { type: 'array', items: { type: 'string' } }, source: { type: 'string' }, updatedAt: { type: ['string', 'null'] } },
  } as const;

  app.get('/api/policy-groups', {
    config: { access: NM_READ },
    schema: {
      tags: ['lists'],
      summary: 'Categories blocked per policy group (console settings win over the config file)',
      response: { 200: { type: 'object', properties: { defaultGroup: { type: 'string' }, items: { type: 'array', items: groupSchema } } } },
    },
  }, async () => {
    const rows = await listPolicyGroups(db);
    const groups = new Map<string, { name: string; categories: string[]; source: string; updatedAt: string | null }>();
    const fallback = config.categories ?? lists.blackCategories();
    groups.set(config.defaultGroup, { name: config.defaultGroup, categories: fallback, source: 'default', updatedAt: null });
    for (const [name, g] of Object.entries(config.policyGroups)) groups.set(name, { name, categories: g.categories, source: 'config', updatedAt: null });
    for (const g of rows) groups.set(g.name, { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString() });
    return { defaultGroup: config.defaultGroup, items: [...groups.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  });

  app.put<{ Params: { name: string }; Body: { categories: string[] } }>('/api/policy-groups/:name', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Set the categories a policy group blocks, in check order; running gateways apply it within 2 s',
      params: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: NAME } } },
      body: {
        type: 'object',
        required: ['categories'],
        properties: { categories: { type: 'array', maxItems: 500, items: { type: 'string', pattern: NAME } } },
      },
      response: { 200: { type: 'object', properties: { group: groupSchema } }, 400: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const categories = [...new Set(req.body.categories)];
    const known = lists.current.categories;
    const unknown = categories.filter((c) => !known.has(c) && c !== 'local');
    if (lists.loaded && unknown.length) {
      throw new SchoolgateError('SG_ERR_VALIDATION', `unknown categories: ${unknown.join(', ')}`, { unknown });
    }
    const g = await setPolicyGroup(db, req.params.name, categories);
    await listSync.applyPolicies();
    await listSync.notify('policy');
    await writeAudit(db, { actor: user, action: 'policy_group_set', target: `policy_group:${req.params.name}`, details: { categories } });
    return { group: { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString() } };
  });
};
