/**
 * The layering rules of issue #12, checked in `npm test` by test/architecture.test.ts (and by
 * `npm run deps`, which prints the same with the CLI).
 * The folders are the layers; dependencies point one way (README, "How it works"):
 *
 *   bin, server  ->  admin-api, filter  ->  proxy, incidents, certs, blocklists (engine), directory  ->  repos (all SQL queries)  ->  db  ->  core
 *
 * proxy/ is protocol only: it calls the hooks the filter gives it (proxy/hooks.ts) and holds no
 * policy, no storage and no console, so a new rule is written once, in filter/, and the protocol
 * is tested and benchmarked without them. Beside the layers, unshipped: test/ and bench/, and
 * harness/ which both use (rules at the end).
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-folder-cycle',
      comment: 'Two folders that import each other are one layer in two places: neither can be understood, tested or replaced alone.',
      severity: 'error',
      scope: 'folder',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-module-cycle',
      comment: 'An ES-module cycle works only while every value in it is read late; a later top-level read breaks it at start-up.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'proxy-is-protocol-only',
      comment:
        'proxy/ may import only core/, certs/, itself and the engine\'s URL types and normalisation (blocklists/types.ts, blocklists/normalize.ts): ' +
        'the protocol must name what it forwards and reject what it cannot parse, and the filter must see the very URL that is fetched. ' +
        'Policy, storage and the console reach it only as hooks (proxy/hooks.ts).',
      severity: 'error',
      from: { path: '^proxy/' },
      to: {
        path: '^(bin|server|filter|admin-api|incidents|db|repos|migrations|bench|test)/|^blocklists/',
        pathNot: '^blocklists/(types|normalize)\\.ts$',
      },
    },
    {
      name: 'no-composition-root-below',
      comment: 'server/ wires the layers and bin/ dispatches commands: nothing they wire may reach back up to them.',
      severity: 'error',
      from: { path: '^(core|db|repos|blocklists|certs|proxy|filter|incidents|admin-api|directory)/' },
      to: { path: '^(server|bin)/' },
    },
    {
      name: 'core-imports-no-layer',
      comment: 'core/ (config, errors, log) is beneath every layer; it imports none of them.',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: '^(bin|server|filter|admin-api|incidents|db|repos|proxy|certs|blocklists|directory)/' },
    },
    {
      name: 'db-imports-only-core',
      comment:
        'db/ (the Db interface, its pg and PGlite backends, migrations, what a database failure means: db/errors.ts) sits under incidents/ and admin-api/: it imports only core/ and ' +
        'itself, so the database can be opened, migrated and tested without any incident or console code.',
      severity: 'error',
      from: { path: '^db/' },
      to: { path: '^(bin|server|filter|admin-api|incidents|repos|proxy|certs|blocklists|directory|bench|test)/' },
    },
    {
      name: 'repos-import-only-db-and-core',
      comment:
        'repos/ holds every SQL query, one module per aggregate (incidents, accounts, lists, audit): it takes a Db and returns typed rows, and imports only ' +
        'db/ (the Db interface), core/ (errors, and the vocabulary of kinds, statuses and roles the rows carry) and itself. ' +
        'What to do with the rows (triage rules, list compiling, the HTTP shape) stays in the layers above, so a query can be read, tested and changed alone.',
      severity: 'error',
      from: { path: '^repos/' },
      to: { path: '^(bin|server|filter|admin-api|incidents|proxy|certs|blocklists|directory|migrations|bench|test)/' },
    },
    {
      name: 'directory-below-the-filter',
      comment:
        'directory/ (the LDAP connector, the people sync, MIS imports) reads the school\'s records and stores them through repos/: ' +
        'it imports only core/, db/ (the Db interface), repos/ and itself. The gateway reaches it through the interface filter/identify.ts ' +
        'declares (DirectoryAuth), wired by server/start.ts, so the filter holds no LDAP code and the connector no policy.',
      severity: 'error',
      from: { path: '^directory/' },
      to: { path: '^(bin|server|filter|admin-api|incidents|proxy|certs|blocklists|migrations|bench|test)/' },
    },
    {
      name: 'no-test-or-bench-in-source',
      comment: 'Tests, benchmarks and the harness they share use the source, never the other way round: none of them ships.',
      severity: 'error',
      from: { pathNot: '^(test|bench|harness)/' },
      to: { path: '^(test|bench|harness)/' },
    },
    {
      name: 'bench-not-test',
      comment:
        'A benchmark uses the source and harness/, never test/: a change to a test helper must not break a benchmark ' +
        'that CI does not run, and a benchmark must not need vitest. What both need lives in harness/ (see harness-is-shared).',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^test/' },
    },
    {
      name: 'harness-is-shared',
      comment:
        'harness/ holds what tests and benchmarks both drive the code with: the UT1 list-folder maker, the self-signed ' +
        'certificate maker, the throwaway PostgreSQL database (and whether a server is there), the TCP relay that cuts or ' +
        'freezes the database connection. A top-level folder rather than test/support/: under test/, bench/ would import ' +
        'test/ again and this rule would need the old exception back. It imports neither test/ nor bench/, so both may use it.',
      severity: 'error',
      from: { path: '^harness/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    // Type-only imports are dependencies too: a type from another layer couples it all the same.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    moduleSystems: ['es6', 'cjs'],
  },
};
