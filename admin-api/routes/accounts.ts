import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { getUser, listUsers, updateUser } from '../../repos/accounts';
import { announceCredentialsChanged } from '../../core/credentials';
import { caller, createUser, generatePassword, revokeCredentials, ROLES, setPassword, type Role } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, userSchema } from '../present';

/**
 * Who may create which accounts. The network manager runs the network, not safeguarding: letting
 * them make a DSL or auditor account would hand them the incident data they must not see.
 */
const MAY_CREATE: Record<Role, readonly Role[]> = {
  safeguarding_lead: ROLES,
  network_manager: ['network_manager', 'staff'],
  staff: [],
  auditor: [],
};

export const accountRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db } = ctx;

  const accountSchema = {
    type: 'object',
    properties: { ...userSchema.properties, disabled: { type: 'boolean' }, createdAt: { type: 'string' }, signIn: { type: 'string', enum: ['password', 'oidc'] } },
  } as const;

  app.get('/api/users', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: { tags: ['accounts'], summary: 'Accounts', response: { 200: { type: 'object', properties: { items: { type: 'array', items: accountSchema } } } } },
  }, async () => {
    return {
      items: (await listUsers(db)).map((u) => ({
        id: Number(u.id), email: u.email, role: u.role, displayName: u.display_name, disabled: u.disabled, createdAt: new Date(u.created_at).toISOString(),
        signIn: u.external ? 'oidc' : 'password',
      })),
    };
  });

  app.post<{ Body: { email: string; role: Role; password?: string; displayName?: string } }>('/api/users', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['accounts'],
      summary: 'Add an account; without a password one is generated and returned once',
      body: {
        type: 'object',
        required: ['email', 'role'],
        properties: {
          email: { type: 'string', minLength: 3, maxLength: 254 },
          role: { type: 'string', enum: [...ROLES] },
          password: { type: 'string', minLength: 8, maxLength: 1024 },
          displayName: { type: 'string', maxLength: 200 },
        },
      },
      response: { 200: { type: 'object', properties: { user: userSchema, password: { type: 'string' } } }, 403: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const me = caller(req);
    if (!MAY_CREATE[me.role].includes(req.body.role)) {
      throw new SchoolgateError('SG_ERR_FORBIDDEN', `a ${me.role} cannot create ${req.body.role} accounts`);
    }
    const generated = req.body.password === undefined ? generatePassword() : undefined;
    const user = await createUser(db, {
      email: req.body.email,
      role: req.body.role,
      password: req.body.password ?? generated!,
      displayName: req.body.displayName ?? null,
    });
    await writeAudit(db, { actor: me, action: 'user_add', target: `user:${user.id}`, details: { email: user.email, role: user.role } });
    return generated ? { user, password: generated } : { user };
  });

  app.patch<{ Params: { id: number }; Body: { role?: Role; disabled?: boolean; displayName?: string } }>('/api/users/:id', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['accounts'],
      summary: 'Change an account: role, display name, or disable it (a leaver loses access at once)',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: {
        type: 'object',
        properties: { role: { type: 'string', enum: [...ROLES] }, disabled: { type: 'boolean' }, displayName: { type: 'string', maxLength: 200 } },
      },
      response: { 200: { type: 'object', properties: { user: accountSchema } }, 403: errorSchema, 404: errorSchema },
    },
  }, async (req) => {
    const me = caller(req);
    const target = await getUser(db, req.params.id);
    if (!target) throw new SchoolgateError('SG_ERR_NOT_FOUND', `user ${req.params.id}`);
    const newRole = req.body.role ?? target.role;
    if (!MAY_CREATE[me.role].includes(target.role) || !MAY_CREATE[me.role].includes(newRole)) {
      throw new SchoolgateError('SG_ERR_FORBIDDEN', `a ${me.role} cannot manage ${target.role} accounts or grant ${newRole}`);
    }
    // Nobody locks themselves out by accident.
    if (target.id === me.id && (req.body.disabled === true || newRole !== me.role)) {
      throw new SchoolgateError('SG_ERR_VALIDATION', 'you cannot disable your own account or change your own role');
    }
    const x = await updateUser(db, target.id, { role: newRole, disabled: req.body.disabled ?? null, displayName: req.body.displayName ?? null });
    if (req.body.disabled) await revokeCredentials(db, { id: Number(target.id), email: target.email });
    // A new role can mean a new policy group for the gateway's cached sign-ins (sessions read the role afresh).
    else if (newRole !== target.role) await announceCredentialsChanged(db, target.email);
    await writeAudit(db, { actor: me, action: 'user_update', target: `user:${target.id}`, details: { email: target.email, ...req.body } });
    return { user: { id: Number(x.id), email: x.email, role: x.role, displayName: x.display_name, disabled: x.disabled, createdAt: new Date(x.created_at).toISOString() } };
  });

  app.post<{ Params: { id: number }; Body: { password?: string } }>('/api/users/:id/password', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['accounts'],
      summary: "Reset someone's password: set the one given, or generate one and return it once; ends every session and API token of theirs at once",
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: { type: 'object', properties: { password: { type: 'string', minLength: 8, maxLength: 1024 } } },
      response: { 200: { type: 'object', properties: { user: accountSchema, password: { type: 'string' } } }, 400: errorSchema, 403: errorSchema, 404: errorSchema },
    },
  }, async (req) => {
    const me = caller(req);
    const target = await getUser(db, req.params.id);
    if (!target) throw new SchoolgateError('SG_ERR_NOT_FOUND', `user ${req.params.id}`);
    if (!MAY_CREATE[me.role].includes(target.role)) throw new SchoolgateError('SG_ERR_FORBIDDEN', `a ${me.role} cannot manage ${target.role} accounts`);
    // Your own needs your current password (POST /api/me/password): a session left open must not change it.
    if (Number(target.id) === Number(me.id)) throw new SchoolgateError('SG_ERR_VALIDATION', 'change your own password with your current one (My account)');
    const generated = req.body?.password === undefined ? generatePassword() : undefined;
    await setPassword(db, Number(target.id), req.body?.password ?? generated!);
    await revokeCredentials(db, { id: Number(target.id), email: target.email });
    await writeAudit(db, { actor: me, action: 'user_password_reset', target: `user:${target.id}`, details: { email: target.email, generated: generated !== undefined } });
    const user = { id: Number(target.id), email: target.email, role: target.role };
    return generated ? { user, password: generated } : { user };
  });
};
