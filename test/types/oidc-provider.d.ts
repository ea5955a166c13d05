// oidc-provider (a devDependency: the tests' local OpenID Connect provider) ships no types.
declare module 'oidc-provider';
