import type { FastifyPluginAsync } from 'fastify';
import { friendlyCategoryName, isProfileGroup, PROFILE_GROUPS } from '../../blocklists/profiles';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { listPolicyGroups, setPolicyGroup } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema } from '../present';
import { NAME, NM, NM_READ } from './lists';

/** The categories each policy group blocks, as the console sets them (blocklists/policy-groups.ts applies them), with their English names. */
export const policyGroupRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists, listSync } = ctx;

  const groupSchema = {
    type: 'object',
    properties: {
      name: { type: 'string' }, categories: { type: 'array', items: { type: 'string' } }, source: { type: 'string' }, updatedAt: { type: ['string', 'null'] },
      // What the console shows: each category's English name and the DfE harm it falls under.
      details: {
        type: 'array',
        items: { type: 'object', properties: { name: { type: 'string' }, friendlyName: { type: 'string' }, harm: { type: ['string', 'null'] } } },
      },
      description: { type: ['string', 'null'] },
    },
  } as const;

  const details = (categories: readonly string[]) =>
    categories.map((c) => ({ name: c, friendlyName: friendlyCategoryName(c, lists.current.categories), harm: listSync.policies.profile.byName.get(c)?.harm ?? null }));

  app.get('/api/policy-groups', {
    config: { access: NM_READ },
    schema: {
      tags: ['lists'],
      summary: 'Categories blocked per policy group (console settings win over the config file, which wins over --categories, which wins over the shipped UK school profile)',
      response: { 200: { type: 'object', properties: { defaultGroup: { type: 'string' }, items: { type: 'array', items: groupSchema } } } },
    },
  }, async () => {
    const rows = await listPolicyGroups(db);
    const groups = new Map<string, { name: string; categories: string[]; source: string; updatedAt: string | null; description: string | null }>();
    const profile = listSync.policies.profile;
    if (config.categories) groups.set(config.defaultGroup, { name: config.defaultGroup, categories: config.categories, source: 'default', updatedAt: null, description: null });
    else {
      for (const name of new Set([...PROFILE_GROUPS, config.defaultGroup])) {
        groups.set(name, { name, categories: listSync.policies.profileFor(name), source: 'profile', updatedAt: null, description: isProfileGroup(name) ? profile.groups[name] : null });
      }
    }
    for (const [name, g] of Object.entries(config.policyGroups)) groups.set(name, { name, categories: g.categories, source: 'config', updatedAt: null, description: null });
    for (const g of rows) groups.set(g.name, { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString(), description: null });
    return {
      defaultGroup: config.defaultGroup,
      items: [...groups.values()].map((g) => ({ ...g, details: details(g.categories) })).sort((a, b) => a.name.localeCompare(b.name)),
    };
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
    return { group: { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString(), details: details(g.categories), description: null } };
  });
};
